using System.Globalization;

namespace CheckpointGpu.Format;

/// <summary>
/// File names of a tensor bundle (<c>tensorflow/core/util/tensor_bundle/naming.cc</c>; spec section 1.1).
/// Data file names always derive from the header's shard count: never list the directory.
/// </summary>
/// <remarks>Stateless and thread-safe.</remarks>
public static class BundleNaming
{
    /// <summary>The <c>.index</c> extension.</summary>
    public const string IndexSuffix = ".index";

    /// <summary>Returns <c>&lt;prefix&gt;.index</c>.</summary>
    /// <param name="prefix">The checkpoint prefix, e.g. <c>/train/ckpt-3</c>.</param>
    public static string IndexFile(string prefix)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        return prefix + IndexSuffix;
    }

    /// <summary>Returns <c>&lt;prefix&gt;.data-%05d-of-%05d</c> (zero-padded to at least 5 digits each).</summary>
    /// <param name="prefix">The checkpoint prefix.</param>
    /// <param name="shardId">0-based shard index, less than <paramref name="shardCount"/>.</param>
    /// <param name="shardCount">Number of data files (<c>num_shards</c>), ≥ 1.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="shardCount"/> &lt; 1 or <paramref name="shardId"/> outside <c>[0, shardCount)</c>.</exception>
    public static string DataFile(string prefix, int shardId, int shardCount)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        ArgumentOutOfRangeException.ThrowIfLessThan(shardCount, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(shardId);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(shardId, shardCount);
        return string.Create(CultureInfo.InvariantCulture, $"{prefix}.data-{shardId:D5}-of-{shardCount:D5}");
    }

    /// <summary>Returns TF's sharded temporary prefix <c>%s-%05d-of-%05d</c> (<c>ShardedFilename</c>, spec section 1.3 B).</summary>
    /// <param name="basename">Prefix base, e.g. <c>P_temp/part</c>.</param>
    /// <param name="shardId">0-based shard index.</param>
    /// <param name="shardCount">Number of shards.</param>
    public static string ShardedPrefix(string basename, int shardId, int shardCount)
    {
        ArgumentNullException.ThrowIfNull(basename);
        return string.Create(CultureInfo.InvariantCulture, $"{basename}-{shardId:D5}-of-{shardCount:D5}");
    }

    /// <summary>
    /// True when <paramref name="fileName"/> (a name, not a path) is a data file of the checkpoint whose prefix's file name is
    /// <paramref name="prefixName"/>: exactly <c>&lt;prefixName&gt;.data-NNNNN-of-NNNNN</c> (5 or more digits each; not a
    /// longer prefix that happens to match, never a <c>.tempstate</c> temporary).
    /// </summary>
    /// <param name="prefixName">The prefix's last path component, e.g. <c>ckpt-3</c>.</param>
    /// <param name="fileName">A file name in the prefix's directory.</param>
    /// <returns>Whether it is one of the checkpoint's data files.</returns>
    public static bool IsDataFileOf(string prefixName, string fileName)
    {
        ArgumentNullException.ThrowIfNull(prefixName);
        ArgumentNullException.ThrowIfNull(fileName);
        if (!fileName.StartsWith(prefixName + ".data-", StringComparison.Ordinal)) return false;
        var rest = fileName.AsSpan(prefixName.Length + ".data-".Length);
        var of = rest.IndexOf("-of-", StringComparison.Ordinal);
        return of >= 5 && AllDigits(rest[..of]) && rest.Length - of - 4 >= 5 && AllDigits(rest[(of + 4)..]);
    }

    private static bool AllDigits(ReadOnlySpan<char> s)
    {
        foreach (var c in s)
            if (!char.IsAsciiDigit(c)) return false;
        return s.Length > 0;
    }
}

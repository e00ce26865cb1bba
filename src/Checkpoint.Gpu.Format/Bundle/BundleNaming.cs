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
}

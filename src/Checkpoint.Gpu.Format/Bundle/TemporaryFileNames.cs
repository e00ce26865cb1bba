using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;

namespace CheckpointGpu.Format;

/// <summary>
/// The one place that names (and recognizes) the temporary files our writers create before the atomic rename of the
/// commit protocol, so a later save can remove what a killed save left behind — and nothing else.
/// </summary>
/// <remarks>
/// <para>Two patterns, both TensorFlow's own:</para>
/// <list type="bullet">
/// <item>bundle files (<c>.index</c>, <c>.data-NNNNN-of-NNNNN</c>): <c>&lt;final name&gt;.tempstate&lt;decimal u64&gt;</c>
/// (<c>tensorflow/core/util/tensor_bundle/tensor_bundle.cc</c>, <c>BundleWriter</c>'s <c>tmp_data_path_</c>);</item>
/// <item>the <c>checkpoint</c> state file: <c>checkpoint.tmp&lt;32 lowercase hex&gt;</c>
/// (<c>tensorflow/python/lib/io/file_io.py</c>, <c>atomic_write_string_to_file</c>: <c>filename + ".tmp" + uuid4().hex</c>).</item>
/// </list>
/// <para>Stateless and thread-safe.</para>
/// </remarks>
public static class TemporaryFileNames
{
    /// <summary>The infix of bundle temporaries, <c>.tempstate</c>.</summary>
    public const string BundleInfix = ".tempstate";

    /// <summary>The infix of state-file temporaries, <c>.tmp</c>.</summary>
    public const string StateFileInfix = ".tmp";

    /// <summary>A fresh temporary name for the bundle file <paramref name="finalPath"/>: <c>&lt;finalPath&gt;.tempstate&lt;random u64&gt;</c>.</summary>
    /// <param name="finalPath">The final path of an <c>.index</c> or <c>.data-…</c> file.</param>
    /// <returns>The temporary path, in the same directory.</returns>
    /// <exception cref="ArgumentException"><paramref name="finalPath"/> is empty.</exception>
    public static string ForBundleFile(string finalPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(finalPath);
        Span<byte> r = stackalloc byte[8];
        RandomNumberGenerator.Fill(r);
        return finalPath + BundleInfix + BinaryPrimitives.ReadUInt64LittleEndian(r).ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>A fresh temporary name for the state file <paramref name="stateFilePath"/>: <c>&lt;stateFilePath&gt;.tmp&lt;32 hex&gt;</c>.</summary>
    /// <param name="stateFilePath">The final path, normally <c>&lt;dir&gt;/checkpoint</c>.</param>
    /// <returns>The temporary path.</returns>
    /// <exception cref="ArgumentException"><paramref name="stateFilePath"/> is empty.</exception>
    public static string ForStateFile(string stateFilePath)
    {
        ArgumentException.ThrowIfNullOrEmpty(stateFilePath);
        return stateFilePath + StateFileInfix + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
    }

    /// <summary>
    /// True when <paramref name="fileName"/> (a name, not a path) is one of our bundle temporaries:
    /// <c>&lt;p&gt;.index.tempstate&lt;digits&gt;</c> or <c>&lt;p&gt;.data-NNNNN-of-NNNNN.tempstate&lt;digits&gt;</c>.
    /// </summary>
    /// <param name="fileName">File name without directory.</param>
    /// <returns>Whether the name matches exactly.</returns>
    public static bool IsBundleTemporary(string fileName)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        var at = fileName.LastIndexOf(BundleInfix, StringComparison.Ordinal);
        if (at <= 0) return false;
        if (!IsDigits(fileName.AsSpan(at + BundleInfix.Length), 1, 20)) return false;
        var final = fileName.AsSpan(0, at);
        if (final.EndsWith(BundleNaming.IndexSuffix, StringComparison.Ordinal)) return final.Length > BundleNaming.IndexSuffix.Length;
        // ".data-" + ≥5 digits + "-of-" + ≥5 digits
        var data = final.LastIndexOf(".data-", StringComparison.Ordinal);
        if (data <= 0) return false;
        var rest = final[(data + ".data-".Length)..];
        var of = rest.IndexOf("-of-", StringComparison.Ordinal);
        return of >= 5 && IsDigits(rest[..of], 5, 10) && IsDigits(rest[(of + 4)..], 5, 10);
    }

    /// <summary>True when <paramref name="fileName"/> is a temporary of the state file <paramref name="stateFileName"/>: <c>&lt;stateFileName&gt;.tmp&lt;32 hex&gt;</c>.</summary>
    /// <param name="fileName">File name without directory.</param>
    /// <param name="stateFileName">The state file's name; default <c>checkpoint</c>.</param>
    /// <returns>Whether the name matches exactly.</returns>
    public static bool IsStateFileTemporary(string fileName, string stateFileName = CheckpointStateFile.FileName)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        ArgumentNullException.ThrowIfNull(stateFileName);
        var head = stateFileName + StateFileInfix;
        if (!fileName.StartsWith(head, StringComparison.Ordinal) || fileName.Length != head.Length + 32) return false;
        foreach (var c in fileName.AsSpan(head.Length))
            if (!char.IsAsciiHexDigitLower(c) && !char.IsAsciiDigit(c)) return false;
        return true;
    }

    private static bool IsDigits(ReadOnlySpan<char> s, int min, int max)
    {
        if (s.Length < min || s.Length > max) return false;
        foreach (var c in s)
            if (!char.IsAsciiDigit(c)) return false;
        return true;
    }
}

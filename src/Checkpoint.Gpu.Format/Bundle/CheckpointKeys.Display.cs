using System.Text;

namespace CheckpointGpu.Format;

// Display text of raw table keys (slice keys are not UTF-8), part of the one key-grammar class.
public static partial class CheckpointKeys
{
    private static readonly UTF8Encoding s_strictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// The text form of a raw table key, exposed as <see cref="BundleEntry.Key"/> (public so that writers outside this
    /// assembly — the IO pipeline's save plan — name slice entries exactly as the writer and the reader do).
    /// Valid UTF-8 → the decoded string. A slice key (spec section 3.4) → <c>"&lt;full name&gt;:&lt;slice&gt;"</c>
    /// (e.g. <c>w:0,5:-</c>), readable and unique per slice. Anything else → lossy UTF-8 decoding
    /// (the exact bytes stay in <see cref="BundleEntry.KeyUtf8"/>).
    /// </summary>
    /// <param name="key">The raw table key bytes; not retained.</param>
    /// <returns>The display text.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="key"/> is null.</exception>
    public static string ToDisplay(byte[] key)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (key.Length > 0 && key[0] == 0 && TensorSlice.TryDecodeSliceKey(key, out var name, out var slice) && slice is not null)
            return Encoding.UTF8.GetString(name) + ":" + slice;
        try
        {
            return s_strictUtf8.GetString(key);
        }
        catch (DecoderFallbackException)
        {
            return Encoding.UTF8.GetString(key);
        }
    }

    /// <summary>True when <see cref="ToDisplay"/> round-trips to the same bytes through UTF-8.</summary>
    internal static bool IsPlainUtf8(byte[] key, string display) =>
        Encoding.UTF8.GetByteCount(display) == key.Length && Encoding.UTF8.GetBytes(display).AsSpan().SequenceEqual(key);
}

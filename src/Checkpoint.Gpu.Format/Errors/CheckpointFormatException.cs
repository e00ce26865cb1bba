using System.Text;

namespace CheckpointGpu.Format;

/// <summary>
/// A checkpoint file is corrupt, truncated, hostile or in a form this engine does not support
/// (TensorFlow's DataLoss/Unimplemented for bundle files), or has no entry for a key the caller asked to read
/// (<see cref="CheckpointFormatError.KeyNotFound"/>, TensorFlow's NotFound).
/// </summary>
/// <remarks>
/// The message starts with the file name, then says what is wrong, where, and expected vs. found
/// (STYLE.md B3). Tensor contents are never printed. Instances are immutable and thread-safe.
/// </remarks>
public sealed class CheckpointFormatException : Exception
{
    /// <summary>Creates an exception with a computed message.</summary>
    /// <param name="error">What is wrong.</param>
    /// <param name="filePath">The file in which the problem was found.</param>
    /// <param name="detail">What is wrong, in words, without the file name.</param>
    /// <param name="key">The table key concerned, if any.</param>
    /// <param name="shardId">The data shard concerned, if any.</param>
    /// <param name="offset">The byte offset in <paramref name="filePath"/>, if known.</param>
    /// <param name="length">The length in bytes of the region concerned, if known.</param>
    /// <param name="innerException">The underlying exception, if any.</param>
    /// <param name="comparison">Expected vs. found, printed after the location (e.g. <c>stored 0x1A2B3C4D, computed 0x0F0E0D0C</c>).</param>
    public CheckpointFormatException(CheckpointFormatError error, string filePath, string detail,
        string? key = null, int? shardId = null, long? offset = null, long? length = null, Exception? innerException = null,
        string? comparison = null)
        : base(BuildMessage(filePath, detail, key, shardId, offset, length, comparison), innerException)
    {
        Error = error;
        FilePath = filePath ?? string.Empty;
        Detail = detail ?? string.Empty;
        Key = key;
        ShardId = shardId;
        Offset = offset;
        Length = length;
    }

    /// <summary>What is wrong.</summary>
    public CheckpointFormatError Error { get; }

    /// <summary>Path of the file in which the problem was found (<c>.index</c>, <c>.data-*</c> or <c>checkpoint</c>).</summary>
    public string FilePath { get; }

    /// <summary>The description of the problem without location information.</summary>
    public string Detail { get; }

    /// <summary>The table key concerned, or <see langword="null"/>.</summary>
    public string? Key { get; }

    /// <summary>The data shard id concerned, or <see langword="null"/>.</summary>
    public int? ShardId { get; }

    /// <summary>Byte offset within <see cref="FilePath"/>, or <see langword="null"/>.</summary>
    public long? Offset { get; }

    /// <summary>Length in bytes of the region concerned, or <see langword="null"/>.</summary>
    public long? Length { get; }

    /// <summary>
    /// True when the file is well-formed but uses a feature this engine does not support (legacy V1,
    /// unsupported version, compression, dtype — including a DataType number newer than this engine — or
    /// endianness). The CLI maps these to exit code 2 and every other format error to exit code 1.
    /// </summary>
    /// <remarks>An unknown dtype can only come from a CRC-valid index block, so it is treated as a newer format, not corruption.</remarks>
    public bool IsUnsupportedInput => Error is CheckpointFormatError.LegacyV1Checkpoint
        or CheckpointFormatError.UnknownDType
        or CheckpointFormatError.UnsupportedVersion
        or CheckpointFormatError.UnsupportedCompression
        or CheckpointFormatError.UnsupportedDType
        or CheckpointFormatError.UnsupportedEndianness;

    private static string BuildMessage(string filePath, string detail, string? key, int? shardId, long? offset, long? length, string? comparison)
    {
        var sb = new StringBuilder();
        sb.Append(string.IsNullOrEmpty(filePath) ? "<unknown file>" : Path.GetFileName(filePath)).Append(": ").Append(detail);
        var hasWhere = key is not null || shardId is not null || offset is not null || length is not null;
        if (hasWhere)
        {
            sb.Append(" (");
            var first = true;
            void Sep() { if (!first) sb.Append(", "); first = false; }
            if (key is not null) { Sep(); sb.Append("key '").Append(key).Append('\''); }
            if (shardId is not null) { Sep(); sb.Append("shard ").Append(shardId.Value); }
            if (offset is not null) { Sep(); sb.Append("offset ").Append(offset.Value); }
            if (length is not null) { Sep(); sb.Append("length ").Append(length.Value).Append(" bytes"); }
            sb.Append(')');
        }
        if (!string.IsNullOrEmpty(comparison)) sb.Append(": ").Append(comparison);
        if (sb[^1] != '.') sb.Append('.');
        if (!string.IsNullOrEmpty(filePath) && !string.Equals(Path.GetFileName(filePath), filePath, StringComparison.Ordinal))
            sb.Append(" [").Append(filePath).Append(']');
        return sb.ToString();
    }
}

using System.Diagnostics.CodeAnalysis;

namespace CheckpointGpu.Format;

/// <summary>Throw sites kept out of hot methods (<c>[DoesNotReturn]</c>, STYLE.md B3).</summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    public static void Format(CheckpointFormatError error, string filePath, string detail,
        string? key = null, int? shardId = null, long? offset = null, long? length = null, string? comparison = null, Exception? inner = null) =>
        throw new CheckpointFormatException(error, filePath, detail, key, shardId, offset, length, inner, comparison);

    [DoesNotReturn]
    public static T Format<T>(CheckpointFormatError error, string filePath, string detail,
        string? key = null, int? shardId = null, long? offset = null, long? length = null, string? comparison = null, Exception? inner = null) =>
        throw new CheckpointFormatException(error, filePath, detail, key, shardId, offset, length, inner, comparison);

    [DoesNotReturn]
    public static void ChecksumMismatch(string filePath, string what, string? key, int? shardId, long? offset, long? length, uint stored, uint computed) =>
        throw new CheckpointFormatException(CheckpointFormatError.ChecksumMismatch, filePath, "checksum mismatch for " + what,
            key, shardId, offset, length, null, $"stored 0x{stored:X8}, computed 0x{computed:X8}");

    [DoesNotReturn]
    public static void FileNotFound(string path, string what) =>
        throw new FileNotFoundException($"{Path.GetFileName(path)}: {what} not found [{path}].", path);

    [DoesNotReturn]
    public static void Finished() => throw new InvalidOperationException("The bundle writer has already finished or failed; create a new writer.");
}

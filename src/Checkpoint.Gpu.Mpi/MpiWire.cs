using System.Buffers.Binary;
using System.Text.Json;
using CheckpointGpu.Distributed;

namespace CheckpointGpu.Mpi;

/// <summary>
/// Byte encodings of what crosses MPI. MPI.NET serializes non-blittable objects with <c>BinaryFormatter</c>, which
/// .NET 10 removed, so only <c>int</c> and <c>byte[]</c> travel: a report is <c>[int32 LE json length][UTF-8 JSON of
/// the fields][the part's index bytes]</c>, a verdict is UTF-8 JSON.
/// </summary>
internal static class MpiWire
{
    private sealed record ReportFields(int Rank, int WorldSize, bool Succeeded, string Prefix, string? GraphSha256, string? PartPrefix,
        int EntryCount, long BytesWritten, string? Error);

    private sealed record VerdictFields(bool Published, string? Reason, int[] MissingRanks, int[] FailedRanks);

    public static byte[] Encode(WorkerReport r)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(new ReportFields(r.Rank, r.WorldSize, r.Succeeded, r.Prefix, r.GraphSha256, r.PartPrefix,
            r.EntryCount, r.BytesWritten, r.Error));
        var bytes = new byte[4 + json.Length + r.PartIndex.Length];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, json.Length);
        json.CopyTo(bytes.AsSpan(4));
        r.PartIndex.Span.CopyTo(bytes.AsSpan(4 + json.Length));
        return bytes;
    }

    /// <exception cref="InvalidDataException">Malformed bytes.</exception>
    public static WorkerReport DecodeReport(ReadOnlySpan<byte> bytes, int fromRank)
    {
        if (bytes.Length < 4) throw new InvalidDataException($"MPI report from rank {fromRank}: {bytes.Length} bytes, shorter than its length field.");
        var jsonLength = BinaryPrimitives.ReadInt32LittleEndian(bytes);
        if (jsonLength < 0 || jsonLength > bytes.Length - 4)
            throw new InvalidDataException($"MPI report from rank {fromRank}: JSON length {jsonLength} outside the {bytes.Length - 4} bytes received.");
        ReportFields f;
        try
        {
            f = JsonSerializer.Deserialize<ReportFields>(bytes.Slice(4, jsonLength)) ?? throw new InvalidDataException($"MPI report from rank {fromRank}: null.");
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"MPI report from rank {fromRank}: unreadable JSON ({ex.Message}).", ex);
        }
        return new WorkerReport
        {
            Rank = f.Rank, WorldSize = f.WorldSize, Succeeded = f.Succeeded, Prefix = f.Prefix ?? "", GraphSha256 = f.GraphSha256,
            PartPrefix = f.PartPrefix, EntryCount = f.EntryCount, BytesWritten = f.BytesWritten, Error = f.Error,
            PartIndex = bytes[(4 + jsonLength)..].ToArray(),
        };
    }

    public static byte[] Encode(CoordinationVerdict v) =>
        JsonSerializer.SerializeToUtf8Bytes(new VerdictFields(v.Published, v.Reason, [.. v.MissingRanks], [.. v.FailedRanks]));

    /// <exception cref="InvalidDataException">Malformed bytes.</exception>
    public static CoordinationVerdict DecodeVerdict(ReadOnlySpan<byte> bytes)
    {
        try
        {
            var f = JsonSerializer.Deserialize<VerdictFields>(bytes) ?? throw new InvalidDataException("MPI verdict: null.");
            return new CoordinationVerdict { Published = f.Published, Reason = f.Reason, MissingRanks = f.MissingRanks ?? [], FailedRanks = f.FailedRanks ?? [] };
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"MPI verdict: unreadable JSON ({ex.Message}).", ex);
        }
    }
}

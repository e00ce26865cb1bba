using System.Text.Json;
using System.Text.Json.Serialization;

namespace CheckpointGpu.Distributed;

/// <summary>
/// Contents of the coordination files (JSON): a worker's completion marker, the chief's <c>published</c> and
/// <c>aborted</c> verdicts.
/// </summary>
internal sealed record CompletionMarker
{
    private static readonly JsonSerializerOptions s_json = new() { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    public const string Ok = "ok";
    public const string Failed = "failed";
    public const string Published = "published";
    public const string Aborted = "aborted";

    public required string Status { get; init; }
    public required int Rank { get; init; }
    public required int WorldSize { get; init; }
    public required string Prefix { get; init; }
    public string? JobId { get; init; }
    public string? GraphSha256 { get; init; }
    /// <summary>The worker's part bundle prefix, or null when it owned nothing.</summary>
    public string? PartPrefix { get; init; }
    public int EntryCount { get; init; }
    public long BytesWritten { get; init; }
    public string? Error { get; init; }
    public IReadOnlyList<int>? MissingRanks { get; init; }
    public IReadOnlyList<int>? FailedRanks { get; init; }

    public byte[] ToJson() => JsonSerializer.SerializeToUtf8Bytes(this, s_json);

    public static CompletionMarker? TryRead(string path, out string? error)
    {
        error = null;
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (FileNotFoundException) { return null; }
        catch (DirectoryNotFoundException) { return null; }
        try
        {
            return JsonSerializer.Deserialize<CompletionMarker>(bytes, s_json) ?? throw new JsonException("null marker");
        }
        catch (JsonException ex)
        {
            error = $"{path}: unreadable marker ({ex.Message})";
            return null;
        }
    }
}

using CheckpointGpu.Format;
using System.Globalization;
using CheckpointGpu.Pipeline;

namespace CheckpointGpu.Distributed;

/// <summary>
/// Names and atomic writes of one checkpoint attempt's coordination files:
/// <c>&lt;dir&gt;/&lt;prefix name&gt;[.&lt;job&gt;].a&lt;attempt&gt;.rank-0000r.json</c> per worker and
/// <c>….verdict.json</c> (published or aborted) from the chief. The attempt number (how many times this job saved
/// this prefix) keeps retries of the same prefix apart.
/// </summary>
internal sealed class CoordinationFiles(WorkerContext worker, string fullPrefix, int attempt)
{
    private readonly string _base = Path.Combine(worker.CoordinationDirectory,
        Path.GetFileName(fullPrefix) + (worker.JobId is null ? "" : "." + worker.JobId) + ".a" + attempt.ToString(CultureInfo.InvariantCulture));

    public WorkerContext Worker { get; } = worker;

    public string WorkerMarker(int rank) => string.Create(CultureInfo.InvariantCulture, $"{_base}.rank-{rank:D5}.json");

    public string Verdict => _base + ".verdict.json";

    public bool TryReadVerdict(out CompletionMarker verdict)
    {
        verdict = CompletionMarker.TryRead(Verdict, out _)!;
        return verdict is not null;
    }

    /// <summary>Writes a marker atomically and durably: temporary file, flush, rename, directory flush.</summary>
    public void Write(string path, CompletionMarker marker)
    {
        var temp = path + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                fs.Write(marker.ToJson());
                fs.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
            LocalShardStorage.Instance.FlushDirectory(Worker.CoordinationDirectory);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    public void TryWrite(string path, CompletionMarker marker)
    {
        try { Write(path, marker); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    public void DeleteWorkerMarkers()
    {
        for (var r = 0; r < Worker.WorldSize; r++) TryDelete(WorkerMarker(r));
    }

    /// <summary>For a timeout message: markers the missing ranks left for other checkpoints (a disagreeing save counter shows up here).</summary>
    public string DescribeOtherMarkers(IReadOnlyList<int> ranks)
    {
        var notes = new List<string>();
        foreach (var r in ranks.Take(8))
        {
            var pattern = string.Create(CultureInfo.InvariantCulture, $"*.rank-{r:D5}.json");
            var others = Directory.EnumerateFiles(Worker.CoordinationDirectory, pattern).Select(Path.GetFileName).Take(3).ToArray();
            if (others.Length > 0) notes.Add($"rank {r} reported for {string.Join(", ", others)}");
        }
        return notes.Count == 0 ? "" : " (" + string.Join("; ", notes) + ")";
    }

    public static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}

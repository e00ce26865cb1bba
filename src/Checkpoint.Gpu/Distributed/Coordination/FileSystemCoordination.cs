using System.Diagnostics;
using System.Globalization;
using CheckpointGpu.Format;

namespace CheckpointGpu.Distributed;

/// <summary>
/// The default coordination: completion-marker files in a directory every worker shares (protocol on
/// <see cref="WorkerContext"/>). Reports are JSON markers written atomically; the chief polls for them (5 ms doubling to
/// 200 ms) and reads each part's index from the shared filesystem (<see cref="CarriesPartIndexes"/> is false); the
/// verdict is a marker file non-chief workers poll for.
/// </summary>
/// <remarks>Thread-safe: state per attempt lives in the files; the last verdict is tracked by the <see cref="WorkerContext"/>.</remarks>
internal sealed class FileSystemCoordination(WorkerContext worker) : IWorkerCoordination
{
    private static readonly TimeSpan s_firstDelay = TimeSpan.FromMilliseconds(5);
    private static readonly TimeSpan s_maxDelay = TimeSpan.FromMilliseconds(200);
    private int _barrierGeneration;

    public int Rank => worker.Rank;

    public int WorldSize => worker.WorldSize;

    public bool CarriesPartIndexes => false;

    private CoordinationFiles Files(CoordinationRound round)
    {
        Directory.CreateDirectory(worker.CoordinationDirectory);
        return new CoordinationFiles(worker, round.Prefix, round.Attempt);
    }

    /// <summary>Barrier by files <c>barrier[.job].g&lt;n&gt;.rank-0000r</c>; each rank deletes its file of generation n−2 (every rank has passed it).</summary>
    public void Barrier(TimeSpan timeout) => Complete(BarrierCoreAsync(timeout, async: false, CancellationToken.None));

    public Task BarrierAsync(TimeSpan timeout, CancellationToken cancellationToken) => BarrierCoreAsync(timeout, async: true, cancellationToken).AsTask();

    private async ValueTask<bool> BarrierCoreAsync(TimeSpan timeout, bool async, CancellationToken cancellationToken)
    {
        var generation = Interlocked.Increment(ref _barrierGeneration);
        Directory.CreateDirectory(worker.CoordinationDirectory);
        string Name(int g, int r) => Path.Combine(worker.CoordinationDirectory,
            string.Create(CultureInfo.InvariantCulture, $"barrier{(worker.JobId is null ? "" : "." + worker.JobId)}.g{g}.rank-{r:D5}"));
        File.WriteAllBytes(Name(generation, Rank), []);
        if (generation > 2) CoordinationFiles.TryDelete(Name(generation - 2, Rank));
        var clock = Stopwatch.StartNew();
        var delay = s_firstDelay;
        using var signal = new DirectoryChangeSignal(worker.CoordinationDirectory);
        while (true)
        {
            var seen = signal.Version;
            var missing = Enumerable.Range(0, WorldSize).Where(r => !File.Exists(Name(generation, r))).ToArray();
            if (missing.Length == 0) return true;
            if (clock.Elapsed >= timeout)
                throw new TimeoutException($"Barrier {generation} in {worker.CoordinationDirectory}: rank(s) {string.Join(", ", missing)} did not arrive within {Seconds(timeout)} s.");
            await signal.WaitAsync(seen, delay, async, cancellationToken).ConfigureAwait(false);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, s_maxDelay.Ticks));
        }
    }

    public IReadOnlyList<WorkerReport?>? Gather(CoordinationRound round, WorkerReport report) =>
        Complete(GatherCoreAsync(round, report, async: false, CancellationToken.None));

    public Task<IReadOnlyList<WorkerReport?>?> GatherAsync(CoordinationRound round, WorkerReport report, CancellationToken cancellationToken) =>
        GatherCoreAsync(round, report, async: true, cancellationToken).AsTask();

    private async ValueTask<IReadOnlyList<WorkerReport?>?> GatherCoreAsync(CoordinationRound round, WorkerReport report, bool async, CancellationToken cancellationToken)
    {
        var files = Files(round);
        files.Write(files.WorkerMarker(Rank), ToMarker(report, round));
        if (Rank != 0) return null;
        var reports = new WorkerReport?[WorldSize];
        var clock = Stopwatch.StartNew();
        var delay = s_firstDelay;
        using var signal = new DirectoryChangeSignal(worker.CoordinationDirectory);
        while (true)
        {
            var seen = signal.Version;
            var failed = false;
            for (var r = 0; r < reports.Length; r++)
            {
                if (reports[r] is not null) { failed |= !reports[r]!.Succeeded; continue; }
                var marker = CompletionMarker.TryRead(files.WorkerMarker(r), out var error);
                if (error is not null)
                {
                    reports[r] = new WorkerReport { Rank = r, WorldSize = WorldSize, Succeeded = false, Prefix = round.Prefix, Error = error };
                    failed = true;
                    continue;
                }
                if (marker is null) continue;
                reports[r] = FromMarker(marker);
                failed |= !reports[r]!.Succeeded;
            }
            if (failed || reports.All(r => r is not null) || clock.Elapsed >= round.Timeout) return reports;
            await signal.WaitAsync(seen, delay, async, cancellationToken).ConfigureAwait(false);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, s_maxDelay.Ticks));
        }
    }

    /// <summary>For a timeout message: markers the missing ranks left for other checkpoints (a disagreeing save counter shows up here).</summary>
    public string DescribeMissing(CoordinationRound round, IReadOnlyList<int> missing) => Files(round).DescribeOtherMarkers(missing);

    public CoordinationVerdict? ShareVerdict(CoordinationRound round, CoordinationVerdict? verdict) =>
        Complete(ShareVerdictCoreAsync(round, verdict, async: false, CancellationToken.None));

    public Task<CoordinationVerdict?> ShareVerdictAsync(CoordinationRound round, CoordinationVerdict? verdict, CancellationToken cancellationToken) =>
        ShareVerdictCoreAsync(round, verdict, async: true, cancellationToken).AsTask();

    private async ValueTask<CoordinationVerdict?> ShareVerdictCoreAsync(CoordinationRound round, CoordinationVerdict? verdict, bool async, CancellationToken cancellationToken)
    {
        var files = Files(round);
        if (Rank == 0)
        {
            ArgumentNullException.ThrowIfNull(verdict);
            var marker = new CompletionMarker
            {
                Status = verdict.Published ? CompletionMarker.Published : CompletionMarker.Aborted, Rank = 0, WorldSize = WorldSize,
                Prefix = round.Prefix, JobId = round.JobId, Error = verdict.Reason,
                MissingRanks = verdict.Published ? null : verdict.MissingRanks, FailedRanks = verdict.Published ? null : verdict.FailedRanks,
            };
            void Publish()
            {
                if (verdict.Published)
                {
                    files.Write(files.Verdict, marker);
                    files.DeleteWorkerMarkers();
                    // Workers of the previous checkpoint have all moved on (they reported for this one): its verdict is no longer read.
                    if (worker.ExchangeLastVerdict(files.Verdict) is { } previous && previous != files.Verdict) CoordinationFiles.TryDelete(previous);
                }
                else
                {
                    files.TryWrite(files.Verdict, marker);
                    files.DeleteWorkerMarkers();
                }
            }
            // The verdict file's write, fsync and rename and the markers' deletes block: an asynchronous caller runs them on
            // the engine's blocking-IO threads (awaited), never on a thread-pool worker.
            if (async) await BlockingIOThreads.Shared.Run(Publish, CancellationToken.None).ConfigureAwait(false);
            else Publish();
            return verdict;
        }
        if (!round.WaitForVerdict)
        {
            if (!files.TryReadVerdict(out var found) || found.Status != CompletionMarker.Aborted) return null;
            CoordinationFiles.TryDelete(files.WorkerMarker(Rank));
            return ToVerdict(found);
        }
        var clock = Stopwatch.StartNew();
        var delay = s_firstDelay;
        using var signal = new DirectoryChangeSignal(worker.CoordinationDirectory);
        while (true)
        {
            var seen = signal.Version;
            if (files.TryReadVerdict(out var found))
            {
                if (found.Status != CompletionMarker.Published) CoordinationFiles.TryDelete(files.WorkerMarker(Rank));
                return ToVerdict(found);
            }
            // The chief's own wait for the markers may take up to Timeout, then it merges: allow twice that.
            if (clock.Elapsed >= 2 * round.Timeout)
                throw new MultiWorkerCheckpointException(
                    $"{round.Prefix}: worker {Rank} got no verdict from the chief (rank 0) after {Seconds(2 * round.Timeout)} s; the checkpoint may or may not be published.",
                    round.Prefix, [0], []);
            await signal.WaitAsync(seen, delay, async, cancellationToken).ConfigureAwait(false);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, s_maxDelay.Ticks));
        }
    }

    public void ReportFailure(CoordinationRound round, WorkerReport failure)
    {
        var files = Files(round);
        files.TryWrite(files.WorkerMarker(Rank), ToMarker(failure, round));
    }

    private static CompletionMarker ToMarker(WorkerReport report, CoordinationRound round) => new()
    {
        Status = report.Succeeded ? CompletionMarker.Ok : CompletionMarker.Failed,
        Rank = report.Rank,
        WorldSize = report.WorldSize,
        Prefix = report.Prefix,
        JobId = round.JobId,
        GraphSha256 = report.GraphSha256,
        PartPrefix = report.PartPrefix,
        EntryCount = report.EntryCount,
        BytesWritten = report.BytesWritten,
        Error = report.Error,
    };

    private static WorkerReport FromMarker(CompletionMarker m) => new()
    {
        Rank = m.Rank,
        WorldSize = m.WorldSize,
        Succeeded = m.Status == CompletionMarker.Ok,
        Prefix = m.Prefix,
        GraphSha256 = m.GraphSha256,
        PartPrefix = m.PartPrefix,
        EntryCount = m.EntryCount,
        BytesWritten = m.BytesWritten,
        Error = m.Status == CompletionMarker.Ok ? null : m.Error ?? "no detail",
    };

    private static CoordinationVerdict ToVerdict(CompletionMarker m) => new()
    {
        Published = m.Status == CompletionMarker.Published,
        Reason = m.Error,
        MissingRanks = m.MissingRanks ?? [],
        FailedRanks = m.FailedRanks ?? [],
    };

    /// <summary>With <c>async: false</c> no wait yields, so the task is complete here; anything else is a bug.</summary>
    private static T Complete<T>(ValueTask<T> task)
    {
        if (!task.IsCompleted) throw new UnreachableException("The synchronous coordination yielded.");
        return task.GetAwaiter().GetResult();
    }

    private static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture);
}

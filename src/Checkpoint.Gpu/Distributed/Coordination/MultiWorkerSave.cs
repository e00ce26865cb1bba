using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;
using CheckpointGpu.Distributed.Variables;

namespace CheckpointGpu.Distributed;

/// <summary>
/// One attempt of a multi-worker save, run by every worker (protocol on <see cref="WorkerContext"/>): decide what this
/// worker owns (<see cref="Begin"/>), write that part (through the IO pipeline, for synchronous and asynchronous saves
/// alike), then <see cref="FinishAsync"/>: report, and — on the chief — wait, verify,
/// merge, publish; or abort cleanly. A failure before the report goes through <see cref="ReportFailure"/>.
/// </summary>
/// <remarks>
/// Sync and async saves share this one protocol and both run it asynchronously: <see cref="FinishAsync"/> is the
/// IO pipeline's <c>onCommitted</c> step, which runs after the part's commit, off the pipeline's ring (the next save may
/// stream meanwhile) and in save order; waits for other workers are signalled (<see cref="DirectoryChangeSignal"/>, or MPI)
/// with no thread held. Its blocking file-system work (the parts' directory flush, the merge with its fsyncs and renames,
/// the removal of the temporary directory and of an aborted part) runs on the engine's dedicated blocking-IO threads
/// (<see cref="BlockingIOThreads.Shared"/>) and is awaited, so no thread-pool worker blocks and every error reaches the
/// save's handle. The <c>async</c> flag remains for coordinations whose synchronous forms are used elsewhere.
/// </remarks>
internal sealed class MultiWorkerSave
{
    private readonly WorkerContext _worker;
    private readonly IWorkerCoordination _coordination;
    private readonly CoordinationRound _round;
    private readonly ObjectGraphSnapshot _snapshot;
    private readonly string _graphHash;
    private readonly WorkerReport _report;
    private int _reported;

    private MultiWorkerSave(WorkerContext worker, IWorkerCoordination coordination, CoordinationRound round, ObjectGraphSnapshot snapshot, string graphHash,
        string? partPrefix, IReadOnlyList<TrackableSaver.SaveUnit> ownedUnits, byte[]? partGraphBytes, WorkerReport report)
    {
        _worker = worker;
        _coordination = coordination;
        _round = round;
        FullPrefix = round.Prefix;
        _snapshot = snapshot;
        _graphHash = graphHash;
        PartPrefix = partPrefix;
        OwnedUnits = ownedUnits;
        PartGraphBytes = partGraphBytes;
        _report = report;
    }

    /// <summary>Absolute prefix of the merged checkpoint.</summary>
    public string FullPrefix { get; }

    /// <summary>This worker's part bundle (<c>&lt;prefix&gt;_temp/part-0000r-of-0000N</c>), or null when it writes none (owns nothing and is not the chief).</summary>
    public string? PartPrefix { get; }

    /// <summary>The save units this worker owns, in data order.</summary>
    public IReadOnlyList<TrackableSaver.SaveUnit> OwnedUnits { get; }

    /// <summary>The storage seam the merge (the one commit protocol) and the part's directory flush go through.</summary>
    public IShardStorage Storage { get; private init; } = LocalShardStorage.Instance;

    /// <summary>The object graph for the part (chief only: the graph is written once), or null.</summary>
    public byte[]? PartGraphBytes { get; }

    /// <summary>
    /// Starts an attempt: expands the snapshot into ownership units (one per tensor, one per local slice of a partitioned
    /// variable), asks the ownership policy, and fixes the part's name and the marker this worker will report.
    /// </summary>
    /// <exception cref="InvalidOperationException">The ownership policy returned a wrong count or an out-of-range rank.</exception>
    public static MultiWorkerSave Begin(WorkerContext worker, string prefix, ObjectGraphSnapshot snapshot, byte[] graphBytes, IShardStorage storage)
    {
        var fullPrefix = Path.GetFullPath(prefix);
        var coordination = worker.EffectiveCoordination;
        var round = new CoordinationRound(fullPrefix, worker.NextAttempt(fullPrefix), worker.Timeout, worker.WaitForPublished, worker.JobId) { Sequence = worker.NextRound() };
        var graphHash = Convert.ToHexString(SHA256.HashData(graphBytes));

        var units = new List<OwnershipUnit>();
        var writes = new List<TrackableSaver.SaveUnit>();
        foreach (var t in snapshot.Tensors)
        {
            var tensor = t;
            var obj = snapshot.Nodes[tensor.NodeId].Object;
            if (tensor.Attribute is PartitionedSaveable partitioned)
            {
                for (var i = 0; i < partitioned.Owner.Parts.Count; i++)
                {
                    var index = i;
                    var part = partitioned.Owner.Parts[i];
                    units.Add(new OwnershipUnit(tensor.Key, obj, part.Slice, part, part.Variable.LengthInBytes, units.Count));
                    writes.Add(new TrackableSaver.SaveUnit(tensor.Key, part.Variable.LengthInBytes, (w, s) => partitioned.SavePart(w, tensor.Key, index, s)));
                }
                continue;
            }
            units.Add(new OwnershipUnit(tensor.Key, obj, null, null, tensor.Attribute.EstimatedSizeInBytes, units.Count));
            writes.Add(new TrackableSaver.SaveUnit(tensor.Key, tensor.Attribute.EstimatedSizeInBytes, (w, s) => tensor.Attribute.Save(w, tensor.Key, s)));
        }
        var owners = worker.Ownership.AssignOwners(units, worker);
        if (owners is null || owners.Count != units.Count)
            throw new InvalidOperationException($"The ownership policy returned {owners?.Count ?? 0} owners for {units.Count} units.");
        var mine = new List<TrackableSaver.SaveUnit>();
        long bytes = 0;
        for (var i = 0; i < units.Count; i++)
        {
            if (owners[i] < 0 || owners[i] >= worker.WorldSize)
                throw new InvalidOperationException($"The ownership policy assigned '{units[i].Key}' to rank {owners[i]} of {worker.WorldSize}.");
            if (owners[i] != worker.Rank) continue;
            mine.Add(writes[i]);
            bytes += units[i].EstimatedSizeInBytes;
        }

        // A worker owning nothing writes no bundle: TF would count an empty shard in num_shards.
        var writesPart = mine.Count > 0 || worker.IsChief;
        var partPrefix = writesPart ? BundleNaming.ShardedPrefix(fullPrefix + "_temp/part", worker.Rank, worker.WorldSize) : null;
        var report = new WorkerReport
        {
            Succeeded = true,
            Rank = worker.Rank,
            WorldSize = worker.WorldSize,
            Prefix = fullPrefix,
            GraphSha256 = graphHash,
            PartPrefix = partPrefix,
            EntryCount = mine.Count + (worker.IsChief ? 1 : 0),
            BytesWritten = bytes,
        };
        return new MultiWorkerSave(worker, coordination, round, snapshot, graphHash, partPrefix, mine, worker.IsChief ? graphBytes : null, report) { Storage = storage };
    }

    /// <summary>
    /// Reports a failure before this worker's completion marker (planning or writing the part failed) as a
    /// <c>failed</c> marker, so the chief aborts at once instead of waiting for the timeout. Best effort; does nothing
    /// once a marker was written.
    /// </summary>
    public void ReportFailure(Exception error)
    {
        if (Interlocked.Exchange(ref _reported, 1) != 0) return;
        // Only this worker's own files: the shared <prefix>_temp/ directory is the chief's to remove (the other workers may
        // be creating their parts in it right now).
        RemovePartFiles(PartPrefix);
        try
        {
            _coordination.ReportFailure(_round, _report with { Succeeded = false, PartPrefix = null, Error = $"{error.GetType().Name}: {error.Message}" });
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            // Best effort: the chief then aborts at its timeout.
        }
    }

    /// <summary>
    /// After the part is durable (files renamed, directory flushed): sends this worker's report through the coordination
    /// (a completion marker, or an MPI gather); the chief then has every report, verifies, merges and publishes, and
    /// shares its verdict; other workers wait for the verdict (<see cref="WorkerContext.WaitForPublished"/>).
    /// </summary>
    /// <param name="async">False: waits sleep the calling thread and the task returned is complete. True: waits are asynchronous.</param>
    /// <param name="cancellationToken">Cancels the waits; a cancelled chief aborts the checkpoint (nothing published).</param>
    /// <exception cref="MultiWorkerCheckpointException">The checkpoint was aborted (by this chief, or found aborted by the chief).</exception>
    /// <exception cref="OperationCanceledException">Cancelled while waiting.</exception>
    public async Task FinishAsync(bool async, CancellationToken cancellationToken)
    {
        // One step on a blocking-IO thread (inline for a synchronous save): the part's directory flush, the report, and —
        // on a chief whose reports are all in at once (it finished last) — the merge and the verdict. Between the last
        // part being durable and the verdict leaving the chief no thread hands off to another; each hand-off cost
        // 0.34 ms median, up to 3.7 ms, at N = 4 on a busy 2-core node (issue 16's per-stage trace, perf RESULTS).
        var step = await Blocking(async, () => ReportStep(async, cancellationToken)).ConfigureAwait(false);
        if (_worker.IsChief)
        {
            if (step.Merged is { } merged)
            {
                await EndPublishAsync(merged.Refusal, async).ConfigureAwait(false);
                return;
            }
            IReadOnlyList<WorkerReport?> reports;
            try
            {
                reports = await step.Gather.ConfigureAwait(false)
                    ?? throw new InvalidOperationException($"{_coordination.GetType().Name}.Gather returned no reports on the chief.");
            }
            catch (OperationCanceledException ex)
            {
                // The chief alone can publish: once it stops waiting, nobody will, so abort for everyone.
                _ = await AbortAsync(async, [], [], "the chief's save was cancelled", ex).ConfigureAwait(false);
                throw;
            }
            _worker.Milestones?.Invoke(CoordinationMilestone.ReportsGathered, Stopwatch.GetTimestamp());
            await PublishAsync(reports, async).ConfigureAwait(false);   // stamps VerdictKnown when it shares the verdict
            return;
        }
        _ = await step.Gather.ConfigureAwait(false);
        var verdict = async ? await _coordination.ShareVerdictAsync(_round, null, cancellationToken).ConfigureAwait(false) : _coordination.ShareVerdict(_round, null);
        _worker.Milestones?.Invoke(CoordinationMilestone.VerdictKnown, Stopwatch.GetTimestamp());
        if (verdict is { Published: false })
        {
            await Blocking(async, () => RemovePart(PartPrefix, FullPrefix)).ConfigureAwait(false);
            throw AbortedByChief(FullPrefix, verdict);
        }
    }

    /// <summary>What <see cref="ReportStep"/> did: the gather (pending, or completed), and when the chief merged in the same step, the outcome.</summary>
    /// <param name="Gather">The gather's task (faulted or cancelled ones are rethrown by the caller's await).</param>
    /// <param name="Merged">Null when the chief has not merged yet (or on other ranks); else the merge's outcome (a null refusal: published, verdict shared).</param>
    private sealed record ReportOutcome(Task<IReadOnlyList<WorkerReport?>?> Gather, MergeOutcome? Merged);

    /// <summary>The chief's merge in <see cref="ReportStep"/>: null <paramref name="Refusal"/> = published and the verdict shared.</summary>
    private sealed record MergeOutcome(Refusal? Refusal);

    /// <summary>
    /// Blocking: flushes the part's directory (the part is then durable), sends this worker's report, and on the chief,
    /// when the gather has completed at once, verifies, merges, publishes and shares the verdict.
    /// </summary>
    private ReportOutcome ReportStep(bool async, CancellationToken cancellationToken)
    {
        if (PartPrefix is not null) Storage.FlushDirectory(Path.GetDirectoryName(PartPrefix)!);
        if (Interlocked.Exchange(ref _reported, 1) != 0)
            throw new InvalidOperationException($"{FullPrefix}: worker {_worker.Rank} already reported this checkpoint.");
        _worker.Milestones?.Invoke(CoordinationMilestone.PartDurable, Stopwatch.GetTimestamp());
        var report = _report;
        // The part's index travels with the report: the chief merges from memory and never reads it back.
        if (_coordination.CarriesPartIndexes && PartPrefix is not null)
        {
            // This worker's own index, just written (page cache): a local read, never the chief reading the shared filesystem.
            var indexFile = BundleNaming.IndexFile(PartPrefix);
            try
            {
                report = report with { PartIndex = File.ReadAllBytes(indexFile) };
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Still take part in the round (collectives need every rank), reporting the failure.
                report = report with { Succeeded = false, PartPrefix = null, Error = $"reading its part's index: {ex.GetType().Name}: {ex.Message}" };
            }
        }

        Task<IReadOnlyList<WorkerReport?>?> gather;
        try
        {
            // Asynchronous gathers return at once (a non-chief's report is on its way; the chief's task completes when
            // every report is in — already, when it finished last). A synchronous save waits here, as before.
            gather = async ? _coordination.GatherAsync(_round, report, cancellationToken) : Task.FromResult(_coordination.Gather(_round, report));
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            gather = Task.FromException<IReadOnlyList<WorkerReport?>?>(ex);   // rethrown where the task is awaited
        }
        if (!_worker.IsChief || !gather.IsCompletedSuccessfully || gather.Result is not { } reports) return new ReportOutcome(gather, null);
        _worker.Milestones?.Invoke(CoordinationMilestone.ReportsGathered, Stopwatch.GetTimestamp());
        return new ReportOutcome(gather, new MergeOutcome(MergeAndShareVerdict(reports)));
    }

    /// <summary>
    /// Runs blocking file-system work (fsync, merge, deletes): for an asynchronous save on the engine's dedicated
    /// blocking-IO threads (<see cref="BlockingIOThreads.Shared"/>), awaited, so no thread-pool worker is held and its
    /// exceptions reach the caller; for a synchronous one inline.
    /// </summary>
    private static Task Blocking(bool async, Action work)
    {
        if (async) return BlockingIOThreads.Shared.Run(work);
        work();
        return Task.CompletedTask;
    }

    /// <inheritdoc cref="Blocking(bool, Action)"/>
    private static Task<T> Blocking<T>(bool async, Func<T> work) =>
        async ? BlockingIOThreads.Shared.Run(work) : Task.FromResult(work());

    /// <summary>
    /// Chief: checks every report, merges (from the gathered indexes, or the part files), publishes and shares the verdict.
    /// The checks, the merge (reads, fsyncs, renames), the published verdict (the coordination's synchronous form, on the
    /// thread that merged) and the temporary directory's removal run through <see cref="Blocking(bool, Action)"/>.
    /// </summary>
    private async Task PublishAsync(IReadOnlyList<WorkerReport?> reports, bool async)
    {
        // The verdict first: the waiting ranks need nothing from the temporary directory, and its removal (a directory
        // walk on a shared filesystem) would otherwise delay every rank's answer. The chief's save still returns only
        // after the removal, so no debris is left once every rank's save has returned. Not cancellable: the checkpoint
        // is published and every rank must hear it. The verdict is sent by the same thread right after the merge's
        // commit point (for an asynchronous save, the blocking-IO thread that merged): a hand-off back to the thread
        // pool in between cost milliseconds of every rank's wait under load (issue 16's per-stage trace).
        var refusal = await Blocking(async, () => MergeAndShareVerdict(reports)).ConfigureAwait(false);
        await EndPublishAsync(refusal, async).ConfigureAwait(false);
    }

    /// <summary>After the chief's merge: aborts the round when it refused (throws), else removes the temporary directory.</summary>
    private async Task EndPublishAsync(Refusal? refusal, bool async)
    {
        if (refusal is { } a) throw await AbortAsync(async, a.Missing, a.Failed, a.Reason, a.Inner).ConfigureAwait(false);
        await Blocking(async, () => RemoveTempDirectory(FullPrefix)).ConfigureAwait(false);
    }

    /// <summary>Blocking: verifies and merges (<see cref="MergeOrRefuse"/>); when published, shares the verdict from this thread.</summary>
    /// <returns>Null when published and the verdict shared; else why the chief refuses (the caller aborts).</returns>
    private Refusal? MergeAndShareVerdict(IReadOnlyList<WorkerReport?> reports)
    {
        var refusal = MergeOrRefuse(reports);
        if (refusal is not null) return refusal;
        _worker.Milestones?.Invoke(CoordinationMilestone.Published, Stopwatch.GetTimestamp());
        _coordination.ShareVerdict(_round, s_published);
        // The chief knows the verdict once it has shared it; the temporary directory's removal that follows is cleanup.
        _worker.Milestones?.Invoke(CoordinationMilestone.VerdictKnown, Stopwatch.GetTimestamp());
        return null;
    }

    private static readonly CoordinationVerdict s_published = new() { Published = true };

    /// <summary>Why the chief refuses to publish (ranks missing or failed, or the merge failed), or null when the merged checkpoint is published.</summary>
    private sealed record Refusal(IReadOnlyList<int> Missing, IReadOnlyList<int> Failed, string Reason, Exception? Inner);

    /// <summary>Verifies the reports and merges the parts (the merge's commit publishes the checkpoint); blocking.</summary>
    private Refusal? MergeOrRefuse(IReadOnlyList<WorkerReport?> reports)
    {
        var failed = new List<int>();
        var reasons = new List<string>();
        for (var r = 0; r < _worker.WorldSize; r++)
        {
            if (r >= reports.Count || reports[r] is not { } m) continue;
            var problem = !m.Succeeded ? $"failed: {m.Error ?? "no detail"}"
                : m.Rank != r || m.WorldSize != _worker.WorldSize ? $"reports rank {m.Rank} of {m.WorldSize}, expected {r} of {_worker.WorldSize}"
                : !string.Equals(m.Prefix, FullPrefix, StringComparison.Ordinal) ? $"saved prefix '{m.Prefix}', the chief '{FullPrefix}' (save counters disagree?)"
                : !string.Equals(m.GraphSha256, _graphHash, StringComparison.Ordinal) ? $"built a different object graph (SHA-256 {m.GraphSha256} vs the chief's {_graphHash}); every worker must build the same graph"
                : null;
            if (problem is not null) { failed.Add(r); reasons.Add($"rank {r} {problem}"); }
        }
        if (failed.Count > 0) return new Refusal([], failed, string.Join("; ", reasons), null);
        var missing = Enumerable.Range(0, _worker.WorldSize).Where(r => r >= reports.Count || reports[r] is null).ToArray();
        if (missing.Length > 0)
            return new Refusal(missing, [], $"no completion marker from rank(s) {string.Join(", ", missing)} after {Seconds(_worker.Timeout)} s"
                + (_coordination is FileSystemCoordination fs ? fs.DescribeMissing(_round, missing) : ""), null);

        var withParts = reports.Select(m => m!).Where(m => m.PartPrefix is not null).OrderBy(m => m.Rank).ToArray();
        try
        {
            if (_coordination.CarriesPartIndexes)
            {
                var parts = withParts.Select(m => TensorBundlePartIndex.Parse(m.PartPrefix!, m.PartIndex.Span)).ToArray();
                VerifyParts(parts);
                TensorBundle.Merge(parts, FullPrefix, MergeOptions);
            }
            else
            {
                var parts = withParts.Select(m => m.PartPrefix!).ToArray();
                VerifyParts(parts.Select(TensorBundlePartIndex.Read).ToArray());
                TensorBundle.Merge(parts, FullPrefix, MergeOptions);
            }
        }
        catch (Exception ex) when (ex is IOException or CheckpointFormatException or InvalidOperationException or UnauthorizedAccessException)
        {
            return new Refusal([], [], $"merging the parts failed: {ex.Message}", ex);
        }
        return null;
    }

    // The parts' index files and <prefix>_temp/ are removed with the whole directory after the verdict is shared
    // (RemoveTempDirectory): deleting them inside the merge put metadata writes between the commit point and the verdict.
    private TensorBundleMergeOptions MergeOptions => new() { Storage = Storage, DeleteInputIndexes = false };

    private static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture);

    /// <summary>Before merging: every key of the object graph is in some part, and partitioned tensors are fully covered.</summary>
    private void VerifyParts(IReadOnlyList<TensorBundlePartIndex> parts)
    {
        var keys = new HashSet<string>(StringComparer.Ordinal);
        var slices = new Dictionary<string, (TensorShape Shape, List<TensorSlice> Slices)>(StringComparer.Ordinal);
        foreach (var part in parts)
        {
            foreach (var e in part.Entries)
            {
                if (e.IsSliceEntry) continue;
                keys.Add(e.Key);
                if (!e.IsPartitioned) continue;
                if (!slices.TryGetValue(e.Key, out var list)) slices[e.Key] = list = (e.Shape, []);
                list.Slices.AddRange(e.Slices);
            }
        }
        var missing = _snapshot.Tensors.Where(t => !t.Attribute.IsGroup && !keys.Contains(t.Key)).Select(t => t.Key).Distinct(StringComparer.Ordinal).ToList();
        if (!keys.Contains(CheckpointKeys.ObjectGraph)) missing.Add(CheckpointKeys.ObjectGraph);
        if (missing.Count > 0)
            throw new InvalidOperationException($"{FullPrefix}: no worker wrote {missing.Count} key(s): {string.Join(", ", missing.Take(10))}{(missing.Count > 10 ? ", …" : "")} (ownership policies disagree, or a RemoteVariable's owner does not hold it).");
        foreach (var (key, (shape, list)) in slices)
        {
            long covered = 0;
            foreach (var s in list) covered += s.GetSliceShape(shape).ElementCount;
            if (covered != shape.ElementCount)
                throw new InvalidOperationException($"{FullPrefix}: the slices written for partitioned '{key}' cover {covered} of {shape.ElementCount} elements of {shape} (slices: {string.Join(", ", list)}).");
        }
    }

    /// <summary>Chief: removes the temporary directory (through <see cref="Blocking(bool, Action)"/>) and shares the abort verdict; returns the exception to throw.</summary>
    private async Task<MultiWorkerCheckpointException> AbortAsync(bool async, IReadOnlyList<int> missing, IReadOnlyList<int> failed, string reason, Exception? inner = null)
    {
        var message = $"{FullPrefix}: multi-worker checkpoint aborted, nothing published: {reason}.";
        await Blocking(async, () => RemoveTempDirectory(FullPrefix)).ConfigureAwait(false);
        var verdict = new CoordinationVerdict { Published = false, Reason = reason, MissingRanks = missing, FailedRanks = failed };
        try
        {
            if (async) await _coordination.ShareVerdictAsync(_round, verdict, CancellationToken.None).ConfigureAwait(false);
            else _coordination.ShareVerdict(_round, verdict);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            // Best effort: workers then time out waiting for the verdict.
        }
        return new MultiWorkerCheckpointException(message, FullPrefix, missing, failed, inner);
    }

    private static MultiWorkerCheckpointException AbortedByChief(string fullPrefix, CoordinationVerdict verdict) =>
        new($"{fullPrefix}: the chief aborted this multi-worker checkpoint: {verdict.Reason ?? "no detail"}.", fullPrefix,
            verdict.MissingRanks, verdict.FailedRanks);

    /// <summary>Deletes <c>&lt;prefix&gt;_temp/</c> and everything in it (parts, tempstate files of killed workers). Best effort, with retries for concurrent writers.</summary>
    private static void RemoveTempDirectory(string fullPrefix)
    {
        var dir = fullPrefix + "_temp";
        for (var attempt = 0; attempt < 5 && Directory.Exists(dir); attempt++)
        {
            // A late worker may create a file between the enumeration and the rmdir: retry at once (no sleeping poll);
            // whatever is still left is removed by the next save's debris sweep.
            try { Directory.Delete(dir, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>A late worker that found the checkpoint aborted: its part, and <c>&lt;prefix&gt;_temp/</c> if it is empty (the chief has already given up).</summary>
    private static void RemovePart(string? partPrefix, string fullPrefix)
    {
        if (partPrefix is null) return;
        RemovePartFiles(partPrefix);
        try { Directory.Delete(fullPrefix + "_temp"); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    private static void RemovePartFiles(string? partPrefix)
    {
        if (partPrefix is null) return;
        var dir = Path.GetDirectoryName(partPrefix)!;
        try
        {
            foreach (var f in Directory.EnumerateFiles(dir, Path.GetFileName(partPrefix) + ".*")) CoordinationFiles.TryDelete(f);
        }
        catch (DirectoryNotFoundException)
        {
            // Already removed (by the chief's abort).
        }
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;

namespace CheckpointGpu.Distributed;

/// <summary>
/// One multi-worker save, run by every worker (protocol on <see cref="WorkerContext"/>): write the owned part, report,
/// and — on the chief — wait, verify, merge, publish; or abort cleanly.
/// </summary>
/// <remarks>
/// The waits poll the shared filesystem synchronously (exponential backoff, bounded by <see cref="WorkerContext.Timeout"/>)
/// because the public save API this runs under (<see cref="Checkpoint.Save"/>) is synchronous; the per-worker write goes
/// through <see cref="TrackableSaver.WriteUnits"/>, the seam the async pipeline replaces.
/// </remarks>
internal static class MultiWorkerSave
{
    private static readonly TimeSpan s_firstDelay = TimeSpan.FromMilliseconds(5);
    private static readonly TimeSpan s_maxDelay = TimeSpan.FromMilliseconds(200);

    public static void Run(WorkerContext worker, string prefix, ObjectGraphSnapshot snapshot, byte[] graphBytes, CheckpointOptions options)
    {
        var fullPrefix = Path.GetFullPath(prefix);
        var files = new CoordinationFiles(worker, fullPrefix, worker.NextAttempt(fullPrefix));
        Directory.CreateDirectory(worker.CoordinationDirectory);
        var graphHash = Convert.ToHexString(SHA256.HashData(graphBytes));

        // Expand the snapshot into ownership units: one per tensor, one per local slice of a partitioned variable.
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

        var partPrefix = BundleNaming.ShardedPrefix(fullPrefix + "_temp/part", worker.Rank, worker.WorldSize);
        var writesPart = mine.Count > 0 || worker.IsChief;
        var marker = new CompletionMarker
        {
            Status = CompletionMarker.Ok,
            Rank = worker.Rank,
            WorldSize = worker.WorldSize,
            Prefix = fullPrefix,
            JobId = worker.JobId,
            GraphSha256 = graphHash,
            PartPrefix = writesPart ? partPrefix : null,
            EntryCount = mine.Count + (worker.IsChief ? 1 : 0),
            BytesWritten = bytes,
        };
        try
        {
            if (writesPart)
            {
                TrackableSaver.WriteUnits(partPrefix, mine, worker.IsChief ? graphBytes : null, options.ShardingPolicy);
                LocalShardStorage.Instance.FlushDirectory(Path.GetDirectoryName(partPrefix)!);
            }
        }
        catch (Exception ex)
        {
            // Report, so the chief aborts at once instead of waiting for the timeout.
            files.TryWrite(files.WorkerMarker(worker.Rank), marker with { Status = CompletionMarker.Failed, PartPrefix = null, Error = $"{ex.GetType().Name}: {ex.Message}" });
            throw;
        }
        files.Write(files.WorkerMarker(worker.Rank), marker);

        if (worker.IsChief)
        {
            FinishAsChief(worker, files, fullPrefix, graphHash, snapshot);
        }
        else if (worker.WaitForPublished)
        {
            WaitForVerdict(worker, files, fullPrefix, writesPart ? partPrefix : null);
        }
        else if (files.TryReadVerdict(out var verdict) && verdict.Status == CompletionMarker.Aborted)
        {
            // The chief already gave up on this checkpoint; do not leave our part behind.
            RemovePart(writesPart ? partPrefix : null, fullPrefix);
            CoordinationFiles.TryDelete(files.WorkerMarker(worker.Rank));
            throw AbortedByChief(fullPrefix, verdict);
        }
    }

    private static void FinishAsChief(WorkerContext worker, CoordinationFiles files, string fullPrefix, string graphHash, ObjectGraphSnapshot snapshot)
    {
        var markers = WaitForMarkers(worker, files, fullPrefix, graphHash);
        var parts = markers.Where(m => m.PartPrefix is not null).OrderBy(m => m.Rank).Select(m => m.PartPrefix!).ToArray();
        try
        {
            VerifyParts(parts, snapshot, fullPrefix);
            TensorBundle.Merge(parts, fullPrefix);
        }
        catch (Exception ex) when (ex is IOException or CheckpointFormatException or InvalidOperationException or UnauthorizedAccessException)
        {
            throw Abort(files, fullPrefix, [], [], $"merging the parts failed: {ex.Message}", ex);
        }
        RemoveTempDirectory(fullPrefix);
        files.Write(files.Verdict, new CompletionMarker { Status = CompletionMarker.Published, Rank = 0, WorldSize = worker.WorldSize, Prefix = fullPrefix, JobId = worker.JobId, GraphSha256 = graphHash });
        files.DeleteWorkerMarkers();
        // Workers of the previous checkpoint have all moved on (they reported for this one): its verdict is no longer read.
        if (worker.ExchangeLastVerdict(files.Verdict) is { } previous && previous != files.Verdict) CoordinationFiles.TryDelete(previous);
    }

    private static CompletionMarker[] WaitForMarkers(WorkerContext worker, CoordinationFiles files, string fullPrefix, string graphHash)
    {
        var markers = new CompletionMarker?[worker.WorldSize];
        var clock = Stopwatch.StartNew();
        var delay = s_firstDelay;
        while (true)
        {
            var failed = new List<int>();
            var reasons = new List<string>();
            for (var r = 0; r < markers.Length; r++)
            {
                if (markers[r] is null)
                {
                    markers[r] = CompletionMarker.TryRead(files.WorkerMarker(r), out var error);
                    if (error is not null) { failed.Add(r); reasons.Add($"rank {r}: {error}"); continue; }
                }
                if (markers[r] is not { } m) continue;
                var problem = m.Status != CompletionMarker.Ok ? $"failed: {m.Error ?? "no detail"}"
                    : m.Rank != r || m.WorldSize != worker.WorldSize ? $"reports rank {m.Rank} of {m.WorldSize}, expected {r} of {worker.WorldSize}"
                    : !string.Equals(m.Prefix, fullPrefix, StringComparison.Ordinal) ? $"saved prefix '{m.Prefix}', the chief '{fullPrefix}' (save counters disagree?)"
                    : !string.Equals(m.GraphSha256, graphHash, StringComparison.Ordinal) ? $"built a different object graph (SHA-256 {m.GraphSha256} vs the chief's {graphHash}); every worker must build the same graph"
                    : null;
                if (problem is not null) { failed.Add(r); reasons.Add($"rank {r} {problem}"); }
            }
            if (failed.Count > 0)
                throw Abort(files, fullPrefix, [], failed, string.Join("; ", reasons));
            var missing = Enumerable.Range(0, markers.Length).Where(r => markers[r] is null).ToArray();
            if (missing.Length == 0) return markers!;
            if (clock.Elapsed >= worker.Timeout)
                throw Abort(files, fullPrefix, missing, [],
                    $"no completion marker from rank(s) {string.Join(", ", missing)} after {worker.Timeout.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture)} s{files.DescribeOtherMarkers(missing)}");
            Thread.Sleep(delay);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, s_maxDelay.Ticks));
        }
    }

    private static void WaitForVerdict(WorkerContext worker, CoordinationFiles files, string fullPrefix, string? partPrefix)
    {
        var clock = Stopwatch.StartNew();
        var delay = s_firstDelay;
        while (true)
        {
            if (files.TryReadVerdict(out var verdict))
            {
                if (verdict.Status == CompletionMarker.Published) return;
                RemovePart(partPrefix, fullPrefix);
                CoordinationFiles.TryDelete(files.WorkerMarker(worker.Rank));
                throw AbortedByChief(fullPrefix, verdict);
            }
            // The chief's own wait for the markers may take up to Timeout, then it merges: allow twice that.
            if (clock.Elapsed >= 2 * worker.Timeout)
                throw new MultiWorkerCheckpointException(
                    $"{fullPrefix}: worker {worker.Rank} got no verdict from the chief (rank 0) after {(2 * worker.Timeout).TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture)} s; the checkpoint may or may not be published.",
                    fullPrefix, [0], []);
            Thread.Sleep(delay);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, s_maxDelay.Ticks));
        }
    }

    /// <summary>Before merging: every key of the object graph is in some part, and partitioned tensors are fully covered.</summary>
    private static void VerifyParts(IReadOnlyList<string> parts, ObjectGraphSnapshot snapshot, string fullPrefix)
    {
        var keys = new HashSet<string>(StringComparer.Ordinal);
        var slices = new Dictionary<string, (TensorShape Shape, List<TensorSlice> Slices)>(StringComparer.Ordinal);
        foreach (var part in parts)
        {
            var (_, entries) = TensorBundleIndex.Read(part);
            foreach (var e in entries)
            {
                if (e.IsSliceEntry) continue;
                keys.Add(e.Key);
                if (!e.IsPartitioned) continue;
                if (!slices.TryGetValue(e.Key, out var list)) slices[e.Key] = list = (e.Shape, []);
                list.Slices.AddRange(e.Slices);
            }
        }
        var missing = snapshot.Tensors.Where(t => !t.Attribute.IsGroup && !keys.Contains(t.Key)).Select(t => t.Key).Distinct(StringComparer.Ordinal).ToList();
        if (!keys.Contains(CheckpointNames.ObjectGraph)) missing.Add(CheckpointNames.ObjectGraph);
        if (missing.Count > 0)
            throw new InvalidOperationException($"{fullPrefix}: no worker wrote {missing.Count} key(s): {string.Join(", ", missing.Take(10))}{(missing.Count > 10 ? ", …" : "")} (ownership policies disagree, or a RemoteVariable's owner does not hold it).");
        foreach (var (key, (shape, list)) in slices)
        {
            long covered = 0;
            foreach (var s in list) covered += s.GetSliceShape(shape).ElementCount;
            if (covered != shape.ElementCount)
                throw new InvalidOperationException($"{fullPrefix}: the slices written for partitioned '{key}' cover {covered} of {shape.ElementCount} elements of {shape} (slices: {string.Join(", ", list)}).");
        }
    }

    private static MultiWorkerCheckpointException Abort(CoordinationFiles files, string fullPrefix, IReadOnlyList<int> missing, IReadOnlyList<int> failed, string reason, Exception? inner = null)
    {
        var message = $"{fullPrefix}: multi-worker checkpoint aborted, nothing published: {reason}.";
        files.TryWrite(files.Verdict, new CompletionMarker
        {
            Status = CompletionMarker.Aborted, Rank = 0, WorldSize = files.Worker.WorldSize, Prefix = fullPrefix, JobId = files.Worker.JobId,
            Error = reason, MissingRanks = missing, FailedRanks = failed,
        });
        RemoveTempDirectory(fullPrefix);
        files.DeleteWorkerMarkers();
        return new MultiWorkerCheckpointException(message, fullPrefix, missing, failed, inner);
    }

    private static MultiWorkerCheckpointException AbortedByChief(string fullPrefix, CompletionMarker verdict) =>
        new($"{fullPrefix}: the chief aborted this multi-worker checkpoint: {verdict.Error ?? "no detail"}.", fullPrefix,
            verdict.MissingRanks ?? [], verdict.FailedRanks ?? []);

    /// <summary>Deletes <c>&lt;prefix&gt;_temp/</c> and everything in it (parts, tempstate files of killed workers). Best effort, with retries for concurrent writers.</summary>
    private static void RemoveTempDirectory(string fullPrefix)
    {
        var dir = fullPrefix + "_temp";
        for (var attempt = 0; attempt < 5 && Directory.Exists(dir); attempt++)
        {
            try { Directory.Delete(dir, recursive: true); }
            catch (IOException) { Thread.Sleep(20); }
            catch (UnauthorizedAccessException) { Thread.Sleep(20); }
        }
    }

    private static void RemovePart(string? partPrefix, string fullPrefix)
    {
        if (partPrefix is null) return;
        var dir = Path.GetDirectoryName(partPrefix)!;
        if (Directory.Exists(dir))
            foreach (var f in Directory.EnumerateFiles(dir, Path.GetFileName(partPrefix) + ".*")) CoordinationFiles.TryDelete(f);
        try { Directory.Delete(fullPrefix + "_temp"); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}

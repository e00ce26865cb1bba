using CheckpointGpu.Format;
using CheckpointGpu.Incremental;
using Google.Protobuf;

namespace CheckpointGpu;

/// <summary>Incremental saves (issue 14): the entry point <see cref="CheckpointManager"/> uses when <see cref="CheckpointManager.IncrementalSaves"/> is set.</summary>
public sealed partial class TrackableSaver
{
    /// <summary>
    /// Writes a checkpoint at exactly <paramref name="prefix"/>, reusing data files of <paramref name="history"/>'s previous
    /// checkpoint whose tensors are all unchanged (see <see cref="IncrementalSaveOptions"/>), then runs the write callbacks.
    /// Plain checkpoints take the pipeline's incremental save (the one <c>SaveAsync</c> uses), waited for; LZ4-compressed
    /// ones the bundle-writer stage (<see cref="IncrementalBundleSave"/>).
    /// </summary>
    internal IncrementalSaveReport WriteIncremental(string prefix, CheckpointOptions options, IncrementalSaveOptions incremental, IncrementalHistory history)
    {
        options.Freeze();
        if (options.Compression is null)
        {
            // Plain checkpoints (single-process or multi-worker, where each worker links its own data files): the pipeline's
            // incremental save (PlanIncremental), waited for. Compressed ones below use the bundle-writer stage.
            IncrementalSaveReport? workerReport = null;
            WriteCore(prefix, options, new IncrementalRequest(incremental, history, r => workerReport = r));
            return workerReport ?? new IncrementalSaveReport(prefix, null, 0, 0, 0, 0, 0, 0, 0);
        }
        if (options.MultiWorker is not null)
            throw new NotSupportedException("CheckpointOptions.Compression is not supported by multi-worker saves yet; convert the merged checkpoint with 'ckpt convert --compress'.");
        // Asynchronous saves still queued (one may be this save's base, whose index is read below) finish first, including
        // their manager bookkeeping, so the state file records the checkpoints in call order.
        foreach (var pending in PendingSaves) WaitForCompletion(pending.Completion);
        var snapshot = ObjectGraphSnapshot.Build(Root, includeSlotVariables: true, options.WriteHasCheckpointValues);
        var graphBytes = snapshot.Proto.ToByteArray();
        var report = IncrementalBundleSave.Write(prefix, snapshot, graphBytes, options, incremental, history);
        foreach (var callback in options.WriteCallbacks) callback(prefix);
        return report;
    }

    /// <summary>
    /// Pipeline saves (asynchronous, multi-worker): plans the incremental save of <paramref name="units"/> and redirects
    /// the pipeline to its fresh part (<paramref name="units"/>, <paramref name="writePrefix"/> and <paramref name="policy"/>
    /// are replaced); the returned save links and merges after that part commits.
    /// </summary>
    /// <param name="request">The manager's options and history.</param>
    /// <param name="snapshot">This save's snapshot.</param>
    /// <param name="units">In: the units this process writes; out: the fresh ones.</param>
    /// <param name="graphBytes">The object graph when this output holds it.</param>
    /// <param name="writePrefix">In: the checkpoint (or part) prefix; out: the fresh part's prefix.</param>
    /// <param name="checkpointPrefix">The checkpoint's prefix.</param>
    /// <param name="partPrefix">A multi-worker save's part prefix, or null.</param>
    /// <param name="policy">Out: the sharding by change history.</param>
    private static IncrementalPipelineSave PlanIncremental(IncrementalRequest request, ObjectGraphSnapshot snapshot, ref IReadOnlyList<SaveUnit> units,
        byte[]? graphBytes, ref string? writePrefix, string checkpointPrefix, string? partPrefix, ref IShardingPolicy policy)
    {
        var output = writePrefix!;
        // Single process: the debris name every save uses (<prefix>_temp); a worker: a directory of its own inside the
        // save's part directory (removed by the chief with it).
        var workDir = partPrefix is null ? checkpointPrefix + "_temp" : partPrefix + ".incremental";
        var save = IncrementalPipelineSave.Plan(request, snapshot, units, graphBytes is not null, output, checkpointPrefix, workDir);
        save.PrepareWorkDirectory();
        units = save.FreshUnits;
        policy = save.Policy;
        writePrefix = save.FreshPrefix;
        return save;
    }

    // ---- LZ4-compressed saves through the IO pipeline (issue 14) ----

    /// <summary>Compressed pipeline saves are single-process and not incremental (the links would have to be compressed files of the same layout).</summary>
    private static void ThrowIfCompressionUnsupported(CheckpointOptions options, IncrementalRequest? incremental)
    {
        if (options.Compression is null) return;
        if (options.MultiWorker is not null)
            throw new NotSupportedException("CheckpointOptions.Compression is not supported by multi-worker saves yet; convert the merged checkpoint with 'ckpt convert --compress'.");
        if (incremental is not null)
            throw new NotSupportedException("CheckpointOptions.Compression with incremental asynchronous saves is not supported yet; use CheckpointManager.Save (synchronous) for compressed incremental checkpoints.");
    }

    /// <summary>
    /// A compressed save through the pipeline stages a plain bundle at <c>&lt;prefix&gt;_temp/plain</c> (the ring writes it with
    /// the pipeline's snapshot semantics: <see cref="Pipeline.SaveHandle.Snapshotted"/>, <see cref="WaitUntilStagedAsync"/>);
    /// returns the checkpoint prefix the compressed bundle goes to and redirects <paramref name="writePrefix"/>.
    /// </summary>
    private static string PlanCompressedStaging(string prefix, ref string? writePrefix)
    {
        var tempDir = prefix + "_temp";
        if (Directory.Exists(tempDir)) Directory.Delete(tempDir, recursive: true);
        Directory.CreateDirectory(tempDir);
        writePrefix = Path.Combine(tempDir, "plain");
        return prefix;
    }

    /// <summary>
    /// After the staged plain bundle committed: compresses it into <paramref name="prefix"/> with the bundle-writer stage
    /// (<see cref="TensorBundle.Convert"/>: same entries, shards, data order and CRCs as the synchronous compressed save),
    /// on Format's <see cref="BlockingIOThreads.Shared"/> (never the caller's thread), then removes the staging directory.
    /// </summary>
    private static async ValueTask CompressStagedAsync(string stagedPrefix, string prefix, CheckpointOptions options, CancellationToken cancellationToken)
    {
        var tempDir = Path.GetDirectoryName(Path.GetFullPath(stagedPrefix))!;
        try
        {
            await BlockingIOThreads.Shared.Run(() => TensorBundle.Convert(stagedPrefix, prefix, options.Compression, options.Storage), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            try { if (Directory.Exists(tempDir)) Directory.Delete(tempDir, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }
}

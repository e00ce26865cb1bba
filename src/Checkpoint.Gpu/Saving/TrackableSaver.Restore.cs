using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Format.Protos;
using CheckpointGpu.Pipeline;
using Google.Protobuf;

namespace CheckpointGpu;

/// <summary>
/// Restores through the IO device (the restore walk, "up"): parse the index once → read the object graph → match it
/// against the live objects (<see cref="RestoreCoordinator"/>) → stream the matched device values in file order through
/// the pipeline's read engine (O_DIRECT reads into the staging ring, CRC32C checked by the readers before any byte
/// reaches a device buffer, host-to-device copies on each variable's stream) → prefetch the values of objects not created
/// yet into a verified host cache (restore-on-create then costs one host-to-device copy).
/// </summary>
public sealed partial class TrackableSaver
{
    /// <summary>
    /// Restores from a checkpoint (TF's <c>TrackableSaver.restore</c>): object-based when the bundle has an object
    /// graph, otherwise name-based (TF1). This is <see cref="RestoreAsync"/> awaited: values for existing objects are in
    /// their device buffers when it returns; the rest wait for their objects to be created (from the prefetch cache).
    /// <see langword="null"/> gives an <see cref="InitializationOnlyStatus"/>.
    /// </summary>
    /// <param name="savePath">Checkpoint prefix, or <see langword="null"/>.</param>
    /// <param name="options">Options; frozen by this call. <see cref="CheckpointOptions.Pipeline"/> picks the IO device.</param>
    /// <returns>The status.</returns>
    /// <remarks>
    /// The wait blocks the calling thread without needing its <see cref="SynchronizationContext"/>: every await of the
    /// restore uses <c>ConfigureAwait(false)</c>, and the matching walk (and the objects' restore callbacks) runs on the
    /// calling thread before the first wait.
    /// </remarks>
    /// <exception cref="FileNotFoundException">The checkpoint's index or data file is missing.</exception>
    /// <exception cref="CheckpointFormatException">The checkpoint is corrupt (a checksum mismatch names the data file, key and
    /// offset; the variable keeps its previous value, never part of the stored one; optimizer slots this call created are
    /// unregistered and disposed).</exception>
    /// <exception cref="CheckpointMismatchException">A value's dtype or shape differs from its live object's.</exception>
    /// <exception cref="KeyNotFoundException">The object graph names a checkpoint key the index does not hold (an inconsistent checkpoint).</exception>
    public LoadStatus Restore(string? savePath, CheckpointOptions? options = null)
    {
        if (savePath is null) return new InitializationOnlyStatus(RestoreCoordinator.NewUid());
        return SyncWait.Run(() => RestoreAsync(savePath, options, CancellationToken.None));
    }

    /// <summary>
    /// Restores through the IO pipeline (see the class remarks): the object graph is matched first, then the values of
    /// existing variables are streamed in file order into their device buffers, then the values of objects not created
    /// yet are prefetched, smallest first, into a host cache bounded by <see cref="CheckpointPipelineOptions.RestoreCacheBudgetInBytes"/>
    /// (the others are read through the engine straight into their new buffers when their objects are created). Values of
    /// <see cref="Distributed.Variables.RemoteVariable"/> placeholders (another worker's) are not read. Partitioned (sliced) values,
    /// big-endian bundles and non-fixed-size dtypes take the checksum-first host fallback of <see cref="TensorBundleReader"/>.
    /// </summary>
    /// <param name="savePath">Checkpoint prefix, or <see langword="null"/> for an initialization-only status.</param>
    /// <param name="options">Options; <see cref="CheckpointOptions.Pipeline"/> picks the IO device (default: the pipeline this
    /// saver owns if it has one, else one created for this restore, sized to the checkpoint, and freed when every value has
    /// been matched or the status is disposed).</param>
    /// <param name="cancellationToken">Cancels the reads.</param>
    /// <returns>The load status, once every value of an existing object is in its device buffer.</returns>
    /// <exception cref="FileNotFoundException">The checkpoint does not exist.</exception>
    /// <exception cref="CheckpointFormatException">A corrupt file or a checksum mismatch (the variable keeps its previous value;
    /// optimizer slots this call created are unregistered and disposed, so the optimizer has the slots it had before).</exception>
    /// <exception cref="CheckpointMismatchException">A value's dtype or shape differs from its live object's.</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public async Task<LoadStatus> RestoreAsync(string? savePath, CheckpointOptions? options = null, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (savePath is null) return new InitializationOnlyStatus(RestoreCoordinator.NewUid());
        options ??= CheckpointOptions.Default;
        options.Freeze();
        var index = ReadIndex(savePath);
        var status = await RestoreWithAsync(savePath, options, index, null, cancellationToken).ConfigureAwait(false);
        _statuses.Add(status);
        return status;
    }

    /// <summary>
    /// <see cref="Restore(string?, CheckpointOptions?)"/> from metadata read elsewhere (<see cref="Distributed.CheckpointMetadata"/>):
    /// the index and object graph are not read from disk; tensor values are read from the data files.
    /// </summary>
    /// <param name="metadata">The checkpoint's index and object graph.</param>
    /// <param name="options">Options; frozen by this call.</param>
    /// <returns>The status.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="metadata"/> is null.</exception>
    /// <exception cref="FileNotFoundException">A data file is missing.</exception>
    /// <exception cref="CheckpointFormatException">The metadata or a data file is corrupt.</exception>
    /// <exception cref="CheckpointMismatchException">A value's dtype or shape differs from its live object's.</exception>
    public LoadStatus RestoreFromMetadata(Distributed.CheckpointMetadata metadata, CheckpointOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        options ??= CheckpointOptions.Default;
        options.Freeze();
        var index = metadata.ParseIndex();
        var status = SyncWait.Run(() => RestoreWithAsync(metadata.Prefix, options, index, metadata.ObjectGraphBytes, CancellationToken.None));
        _statuses.Add(status);
        return status;
    }

    /// <summary>Parses <c>&lt;savePath&gt;.index</c> (once per restore), with TF's friendlier message when it is missing.</summary>
    private static TensorBundlePartIndex ReadIndex(string savePath)
    {
        try
        {
            return TensorBundlePartIndex.Read(savePath);
        }
        catch (FileNotFoundException ex)
        {
            throw new FileNotFoundException(
                $"Error when restoring from checkpoint or SavedModel at {savePath}: {ex.Message} Please double-check that the path is correct. You may be missing the checkpoint suffix (e.g. the '-1' in 'path/to/ckpt-1').",
                ex.FileName, ex);
        }
    }

    /// <summary>Matches, streams and prefetches (see <see cref="RestoreAsync"/>); the walk runs synchronously before the first await.</summary>
    private async Task<LoadStatus> RestoreWithAsync(string savePath, CheckpointOptions options, TensorBundlePartIndex index, byte[]? graphBytes,
        CancellationToken cancellationToken)
    {
        var pending = new PendingValues();
        EngineTensorReader OpenReader() => OpenEngineReader(index, graphBytes, options, pending);
        var reader = OpenReader();
        RestoreCoordinator? coordinator = null;
        NameBasedRestoreCoordinator? nameBased = null;
        try
        {
            var graphProto = reader.ReadObjectGraphBytes();
            if (graphProto is null)
            {
                nameBased = new NameBasedRestoreCoordinator(savePath, reader, OpenReader, pending);
                reader.Batching = true;
                foreach (var obj in View.ListObjects()) obj.NameBasedAttributeRestore(nameBased);
                reader.Batching = false;
                await reader.FlushAsync(cancellationToken).ConfigureAwait(false);
                await reader.PrefetchAsync(KeysToPrefetch(reader.Keys), cancellationToken).ConfigureAwait(false);
                return new NameBasedLoadStatus(nameBased, View);
            }
            TrackableObjectGraph graph;
            try
            {
                graph = TrackableObjectGraph.Parser.ParseFrom(graphProto);
            }
            catch (InvalidProtocolBufferException ex)
            {
                throw new CheckpointFormatException(CheckpointFormatError.MalformedProto, BundleNaming.IndexFile(savePath),
                    "the object graph cannot be parsed as a TrackableObjectGraph", CheckpointKeys.ObjectGraph, innerException: ex);
            }
            if (graph.Nodes.Count == 0)
                throw new CheckpointFormatException(CheckpointFormatError.MalformedProto, BundleNaming.IndexFile(savePath),
                    "the object graph has no nodes", CheckpointKeys.ObjectGraph);
            coordinator = new RestoreCoordinator(savePath, reader, OpenReader, graph, options, Log, pending);
            reader.Batching = true;
            // Variables the walk creates (optimizer slots) are provisional until this call succeeds.
            coordinator.BeginBatch();
            new CheckpointPosition(coordinator, 0).Restore(Root);
            reader.Batching = false;
            await reader.FlushAsync(cancellationToken).ConfigureAwait(false);
            if (!coordinator.IsFullyMatched)
                await reader.PrefetchAsync(KeysToPrefetch(coordinator.UnmatchedValueKeys()), cancellationToken).ConfigureAwait(false);
            coordinator.CompleteBatch();
            coordinator.CloseReaderIfDone();
            return new CheckpointLoadStatus(coordinator, View);
        }
        catch
        {
            if (coordinator is not null)
            {
                // Slots the walk created hold no (or unverified) bytes: unregister and dispose them, so the optimizer is as
                // it was before this call (existing variables keep their previous value or hold the whole verified one).
                coordinator.FailBatch();
                // Deferred positions may outlive the failure; the coordinator reopens the bundle if they fire.
                coordinator.ExpectPartial = true;
                coordinator.Dispose();
            }
            else if (nameBased is not null)
            {
                nameBased.Dispose();
            }
            else
            {
                reader.Dispose();
            }
            throw;
        }
    }

    /// <summary>
    /// The reader over the IO device: <see cref="CheckpointOptions.Pipeline"/>, else the pipeline this saver owns, else a
    /// pipeline of its own for this restore (ring sized to the checkpoint, at most the default 8 × 8 MiB), on the
    /// accelerator holding the most variable bytes (or the saver's small CPU accelerator when no variable exists yet —
    /// values are copied on each variable's own stream, so the ring's accelerator does not matter).
    /// </summary>
    private EngineTensorReader OpenEngineReader(TensorBundlePartIndex index, byte[]? graphBytes, CheckpointOptions options, PendingValues pending)
    {
        var pipeline = options.Pipeline;
        CheckpointPipeline? owned = null;
        if (pipeline is null)
        {
            lock (_pipelineLock) pipeline = _ownedPipeline;
        }
        if (pipeline is null)
        {
            var variables = View.ListObjects().OfType<Variable>().ToArray();
            Accelerator accelerator;
            lock (_pipelineLock)
            {
                accelerator = variables.Length > 0
                    ? variables.GroupBy(v => v.Accelerator).MaxBy(g => g.Sum(v => v.LengthInBytes))!.Key
                    : (_ownedAccelerator ??= Accelerator.Create(AcceleratorKind.Cpu));
            }
            var total = index.Entries.Where(e => !e.IsSliceEntry).Sum(e => Math.Max(0, e.Size));
            var slot = Math.Clamp((total / CheckpointPipelineOptions.DefaultSlotCount + 4095) & ~4095L, 64 << 10, CheckpointPipelineOptions.DefaultSlotSizeInBytes);
            pipeline = owned = new CheckpointPipeline(accelerator, options.IO ?? new CheckpointPipelineOptions { SlotSizeInBytes = (int)slot });
        }
        // IO settings apply per restore (the saver's own pipeline re-shapes its ring to them); a pipeline made for this
        // restore alone keeps its checkpoint-sized ring unless the call named IO settings.
        var io = options.Pipeline is not null ? pipeline.Options : options.IO ?? (owned is not null ? owned.Options : CheckpointPipelineOptions.Default);
        return EngineTensorReader.Open(index, graphBytes, pipeline, io, owned, pending);
    }

    /// <summary>
    /// <paramref name="checkpointKeys"/> except those of <see cref="Distributed.Variables.RemoteVariable"/> placeholders in the live
    /// tree: another worker holds and restores those (model parallelism), so reading them here would cost this worker's
    /// disk bandwidth and cache memory for nothing. Keys of objects not created yet stay in (restore-on-create).
    /// </summary>
    private IEnumerable<string> KeysToPrefetch(IEnumerable<string> checkpointKeys)
    {
        var remote = ObjectGraphSnapshot.Build(Root, includeSlotVariables: true).Tensors
            .Where(t => t.Attribute is Distributed.Variables.RemoteVariable.RemoteSaveable).Select(t => t.Key).ToHashSet(StringComparer.Ordinal);
        return remote.Count == 0 ? checkpointKeys : checkpointKeys.Where(k => !remote.Contains(k));
    }
}

using Google.Protobuf;
using System.Globalization;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.IO;
using CheckpointGpu.Pipeline;

namespace CheckpointGpu;

/// <summary>Asynchronous saves through the IO pipeline (TF's async checkpointing, done with a pinned staging ring).</summary>
public sealed partial class TrackableSaver : IAsyncDisposable
{
    private readonly object _pipelineLock = new();
    private readonly List<CheckpointPipeline> _pipelinesUsed = [];
    private readonly HashSet<SaveHandle> _pendingSaves = [];
    private CheckpointPipeline? _ownedPipeline;
    private int _queuing;
    private Accelerator? _ownedAccelerator;

    /// <summary>
    /// Queue observer seam: when set, every asynchronous save awaits it after its plan is fixed and before it drains the
    /// variables' streams and is queued on the IO pipeline (an exception it throws fails that call like any queuing
    /// failure: the plan's snapshots are released and a multi-worker save reports the failure). The library sets nothing
    /// here; tests use it to hold a call at the point where it is still pending.
    /// </summary>
    internal Func<CancellationToken, ValueTask>? QueueObserver { get; set; }

    /// <summary>Appends <c>-N</c> to <paramref name="filePrefix"/> when <paramref name="checkpointNumber"/> is non-zero (TF's <c>TrackableSaver.save</c>, spec §1.2).</summary>
    internal static string NumberedPrefix(string filePrefix, long checkpointNumber) =>
        checkpointNumber != 0 ? $"{filePrefix}-{checkpointNumber.ToString(CultureInfo.InvariantCulture)}" : filePrefix;

    /// <summary>
    /// Queues a save of the object graph to <c>filePrefix[-checkpointNumber]</c> on the IO pipeline and returns its handle
    /// once the save's plan is fixed; the files are written in the background.
    /// </summary>
    /// <param name="filePrefix">Prefix; <c>-N</c> is appended when <paramref name="checkpointNumber"/> is non-zero.</param>
    /// <param name="checkpointNumber">Checkpoint number, or 0 for none.</param>
    /// <param name="options">Options; <see cref="CheckpointOptions.Pipeline"/> picks the IO device (default: one owned by this saver,
    /// created at its first async save or restore on the accelerator holding the most bytes of saved variables, with
    /// default <see cref="CheckpointPipelineOptions"/>; values on other accelerators are copied to host memory while the
    /// save is planned).</param>
    /// <param name="cancellationToken">Cancels queuing and the save itself (temporary files are removed).</param>
    /// <returns>
    /// The handle: <see cref="SaveHandle.Snapshotted"/> completes when no variable's device bytes are needed any more,
    /// <see cref="SaveHandle.Completion"/> when the checkpoint is durable (or faults with the first error).
    /// </returns>
    /// <remarks>
    /// Before the plan is fixed, the default streams of every accelerator holding a saved variable are drained, so device
    /// work queued before the call is in the checkpoint. After the call, do not mutate a saved variable until
    /// <see cref="SaveHandle.Snapshotted"/> or <see cref="WaitUntilStagedAsync"/> for that variable completes (the Nn
    /// optimizers do the latter through their write barrier).
    /// <para><b>Multi-worker</b> (<see cref="CheckpointOptions.MultiWorker"/>): the tensors this worker owns go through the
    /// pipeline to its part (<c>&lt;prefix&gt;_temp/part-0000r-of-0000N</c>); after the part commits, the protocol of
    /// <see cref="Distributed.WorkerContext"/> runs on the pipeline's completion path, waiting asynchronously (no thread
    /// held; the merge, fsyncs, renames and deletes run on the engine's blocking-IO threads) — the chief merges and
    /// publishes, the others wait for its verdict. <see cref="SaveHandle.Completion"/> then
    /// completes when the merged checkpoint is published (faults with <see cref="Distributed.MultiWorkerCheckpointException"/>
    /// when it was aborted); <see cref="SaveHandle.Prefix"/> names the part, <see cref="SaveHandle.CheckpointPrefix"/> the
    /// merged checkpoint. A worker that owns nothing writes no files; its handle's plan is empty. Queued saves still
    /// finish in call order.</para>
    /// </remarks>
    /// <exception cref="ArgumentException"><paramref name="filePrefix"/> is empty.</exception>
    /// <exception cref="InvalidOperationException">A previous call has not returned yet (await each call before the next).</exception>
    /// <exception cref="Distributed.MultiWorkerCheckpointException">Multi-worker options: the checkpoint was aborted (faults <see cref="SaveHandle.Completion"/>).</exception>
    public ValueTask<SaveHandle> SaveAsync(string filePrefix, long checkpointNumber = 0, CheckpointOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(filePrefix);
        return SaveAsyncCore(NumberedPrefix(filePrefix, checkpointNumber), options ?? CheckpointOptions.Default, onCommitted: null, cancellationToken);
    }

    /// <summary>Queues a save to exactly <paramref name="filePrefix"/> (no number, no state file); see <see cref="SaveAsync"/>.</summary>
    /// <param name="filePrefix">Prefix.</param>
    /// <param name="options">Options (see <see cref="SaveAsync"/>).</param>
    /// <param name="cancellationToken">Cancels the save.</param>
    /// <returns>The save's handle.</returns>
    /// <exception cref="ArgumentException"><paramref name="filePrefix"/> is empty.</exception>
    public ValueTask<SaveHandle> WriteAsync(string filePrefix, CheckpointOptions? options = null, CancellationToken cancellationToken = default) =>
        SaveAsync(filePrefix, 0, options, cancellationToken);

    /// <summary>
    /// Write barrier: completes when no queued or running save of this saver still needs <paramref name="variable"/>'s
    /// current device bytes, so it may be mutated. Completes synchronously when nothing is pending.
    /// </summary>
    /// <param name="variable">The variable about to be written.</param>
    /// <param name="cancellationToken">Cancels the wait (not the save).</param>
    /// <exception cref="ArgumentNullException"><paramref name="variable"/> is null.</exception>
    public ValueTask WaitUntilStagedAsync(Variable variable, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(variable);
        CheckpointPipeline[] pipelines;
        lock (_pipelineLock) pipelines = [.. _pipelinesUsed];
        if (pipelines.Length == 0) return ValueTask.CompletedTask;
        if (pipelines.Length == 1) return pipelines[0].WaitUntilStagedAsync(variable.Buffer, cancellationToken);
        return WaitAllAsync(pipelines, variable.Buffer, cancellationToken);

        static async ValueTask WaitAllAsync(CheckpointPipeline[] pipelines, DeviceBuffer buffer, CancellationToken ct)
        {
            foreach (var p in pipelines) await p.WaitUntilStagedAsync(buffer, ct).ConfigureAwait(false);
        }
    }

    /// <summary>Throws when a previous async save call has not returned yet (checked before side effects such as the counter).</summary>
    internal void ThrowIfQueuing()
    {
        if (Volatile.Read(ref _queuing) != 0)
            throw new InvalidOperationException("A previous SaveAsync/WriteAsync call has not returned yet: await it before queuing another save (its handle lets the save overlap with training).");
    }

    internal ValueTask<SaveHandle> SaveAsyncCore(string prefix, CheckpointOptions options,
        Func<string, CancellationToken, ValueTask>? onCommitted, CancellationToken cancellationToken, Incremental.IncrementalRequest? incremental = null)
    {
        cancellationToken.ThrowIfCancellationRequested();
        options.Freeze();
        // Issue 14 hook: LZ4 through the pipeline = plain staging part + compression off the caller's thread (TrackableSaver.Incremental.cs).
        ThrowIfCompressionUnsupported(options, incremental);
        // Saves are queued in call order, so a call must be awaited before the next one starts.
        if (Interlocked.Exchange(ref _queuing, 1) != 0)
            throw new InvalidOperationException("A previous SaveAsync/WriteAsync call has not returned yet: await it before queuing another save (its handle lets the save overlap with training).");
        PlannedSave planned;
        try
        {
            planned = PlanSave(prefix, options, onCommitted, incremental);
        }
        catch
        {
            Volatile.Write(ref _queuing, 0);
            throw;
        }
        return QueueAsync(planned, cancellationToken);
    }

    /// <summary>
    /// The synchronous save: exactly the pipeline's save (<see cref="SaveAsyncCore"/>'s plan, queue and commit protocol),
    /// waited for. There is no second writer engine.
    /// </summary>
    /// <remarks>
    /// How the wait avoids sync-over-async deadlock: the save's work never needs the caller's thread or context — every
    /// await in the pipeline uses <c>ConfigureAwait(false)</c>, its blocking file-system calls run on Format's dedicated
    /// <see cref="Format.BlockingIOThreads"/>, and device copies complete on the accelerators' own threads — so the caller
    /// blocks on a <see cref="ManualResetEventSlim"/> set by the completion's continuation (a non-async primitive; no
    /// <c>.Result</c>/<c>.Wait()</c> on a task).
    /// </remarks>
    internal void WriteCore(string prefix, CheckpointOptions options, Incremental.IncrementalRequest? incremental = null)
    {
        options.Freeze();
        if (options.Compression is not null)
        {
            // Issue 14: LZ4-compressed saves take the bundle-writer stage (compressed sizes decide file offsets, which
            // the ring pipeline plans before any byte moves); same commit protocol (BundleCommit), not the ring.
            if (options.MultiWorker is not null)
                throw new NotSupportedException("CheckpointOptions.Compression is not supported by multi-worker saves yet; convert the merged checkpoint with 'ckpt convert --compress'.");
            var snapshot = ObjectGraphSnapshot.Build(Root, includeSlotVariables: true, options.WriteHasCheckpointValues);
            WriteUnits(prefix, BuildUnits(snapshot), snapshot.Proto.ToByteArray(), options.ShardingPolicy, options.Compression);
            foreach (var callback in options.WriteCallbacks) callback(prefix);
            return;
        }
        if (Interlocked.Exchange(ref _queuing, 1) != 0)
            throw new InvalidOperationException("A SaveAsync/WriteAsync call has not returned yet: await it before saving synchronously.");
        SaveHandle handle;
        try
        {
            var planned = PlanSave(prefix, options, onCommitted: null, incremental);
            try
            {
                // The pipeline copies on a stream of its own: work already queued on the variables' streams must land first.
                foreach (var accelerator in planned.Accelerators) accelerator.DefaultStream.Synchronize();
                handle = Enqueue(planned, CancellationToken.None);
            }
            catch (Exception ex)
            {
                planned.Abandon(ex);
                throw;
            }
        }
        finally
        {
            Volatile.Write(ref _queuing, 0);
        }
        WaitForCompletion(handle.Completion);
        // Reported to the caller here; disposal must not report it a second time.
        lock (_pipelineLock) _pendingSaves.Remove(handle);
        SyncWait.ThrowIfUnsuccessful(handle.Completion, $"The save of {prefix} was cancelled.");
    }

    /// <summary>Blocks the calling thread until <paramref name="task"/> completes, on a non-async primitive (see <see cref="WriteCore"/>).</summary>
    internal static void WaitForCompletion(Task task) => WaitForCompletion(task, Timeout.InfiniteTimeSpan);

    /// <summary>As <see cref="WaitForCompletion(Task)"/>, bounded: false when <paramref name="task"/> is still running after <paramref name="timeout"/>.</summary>
    internal static bool WaitForCompletion(Task task, TimeSpan timeout)
    {
        if (task.IsCompleted) return true;
        // Not disposed: the continuation may still be inside Set() when Wait() returns; without a wait handle
        // allocated there is nothing to release.
        var done = new ManualResetEventSlim();
        _ = task.ContinueWith(static (_, state) => ((ManualResetEventSlim)state!).Set(), done, CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return done.Wait(timeout);
    }

    /// <summary>A save whose plan is fixed, ready to queue.</summary>
    private sealed record PlannedSave(CheckpointPipeline Pipeline, CheckpointPipelineOptions IO, string WritePrefix, string CheckpointPrefix, SavePlan? Plan,
        Accelerator[] Accelerators, Func<string, CancellationToken, ValueTask> OnCommitted, Action<Exception>? OnFailed, DeviceBuffer[] Clones)
    {
        /// <summary>Frees the plan-time snapshots (after the save finished, or when it was never queued).</summary>
        public void ReleaseClones()
        {
            foreach (var clone in Clones) clone.Dispose();
        }

        /// <summary>The save was never queued: frees the snapshots and reports <paramref name="error"/> to the failure hooks.</summary>
        public void Abandon(Exception error)
        {
            ReleaseClones();
            OnFailed?.Invoke(error);
        }
    }

    /// <summary>Snapshots the object graph and fixes the save's plan (every read of host-side state happens here).</summary>
    private PlannedSave PlanSave(string prefix, CheckpointOptions options, Func<string, CancellationToken, ValueTask>? onCommitted,
        Incremental.IncrementalRequest? incremental = null)
    {
        Distributed.MultiWorkerSave? multiWorker = null;
        Incremental.IncrementalPipelineSave? incr = null;
        try
        {
            // Everything read from host-side state happens here, before the first await: the plan reflects the call's
            // moment (values on other accelerators, such as the save counter, are copied to host memory now).
            var snapshot = ObjectGraphSnapshot.Build(Root, includeSlotVariables: true, options.WriteHasCheckpointValues);
            var graphBytes = snapshot.Proto.ToByteArray();
            var variables = SavedVariables(snapshot);
            var pipeline = options.Pipeline ?? GetOrCreatePipeline(variables, options.IO);
            var io = EffectiveIO(options, pipeline);
            lock (_pipelineLock) if (!_pipelinesUsed.Contains(pipeline)) _pipelinesUsed.Add(pipeline);
            // Multi-worker: this worker writes only the units it owns, to its part; the protocol finishes after the part commits.
            IReadOnlyList<SaveUnit> units;
            byte[]? planGraph;
            string? writePrefix;
            if (options.MultiWorker is { } worker)
            {
                multiWorker = Distributed.MultiWorkerSave.Begin(worker, prefix, snapshot, graphBytes, options.Storage);
                (units, planGraph, writePrefix) = (multiWorker.OwnedUnits, multiWorker.PartGraphBytes, multiWorker.PartPrefix);
            }
            else
            {
                (units, planGraph, writePrefix) = (BuildUnits(snapshot), graphBytes, prefix);
            }
            // Issue 14 hook: incremental saves write only the fresh units to a temporary part (TrackableSaver.Incremental.cs).
            IShardingPolicy policy = options.ShardingPolicy;
            if (incremental is not null && writePrefix is not null)
                incr = PlanIncremental(incremental, snapshot, ref units, planGraph, ref writePrefix, prefix, multiWorker?.PartPrefix, ref policy);
            var compressTo = options.Compression is not null && multiWorker is null ? PlanCompressedStaging(prefix, ref writePrefix) : null;
            SavePlan? plan = null;
            DeviceBuffer[] clones = [];
            if (writePrefix is not null && incr?.FreshIsEmpty(planGraph is not null) != true)
            {
                var assignment = AssignShards(units, planGraph, policy);
                var collector = new SaveItemCollector(pipeline.Accelerator);
                for (var i = 0; i < units.Count; i++) units[i].Write(collector, assignment.ShardIds[i]);
                if (planGraph is not null) collector.AddObjectGraph(planGraph, assignment.ShardIds[^1]);
                clones = [.. collector.Clones];
                plan = SavePlan.Create(collector.Items, assignment.ShardCount);
            }
            // Callbacks get the prefix as the caller gave it (never the part's).
            var callbacks = options.WriteCallbacks;
            var multi = multiWorker;
            var hasFreshPart = plan is not null;
            async ValueTask Committed(string _, CancellationToken ct)
            {
                if (incr is not null) await incr.CommitAsync(hasFreshPart, ct).ConfigureAwait(false);
                if (compressTo is not null) await CompressStagedAsync(writePrefix!, compressTo, options, ct).ConfigureAwait(false);
                if (multi is not null) await multi.FinishAsync(async: true, ct).ConfigureAwait(false);
                incr?.Complete();
                if (callbacks.Count == 0 && onCommitted is null) return;
                // What follows the commit point blocks (the write callbacks; the state file's fsyncs and renames and the
                // pruning's deletes inside onCommitted): it runs on the engine's blocking-IO threads, never on a thread-pool
                // worker, and is awaited — its errors fault the save's handle. Not cancellable once started: the checkpoint
                // is already committed, and its bookkeeping must not stop half-way.
                await BlockingIOThreads.Shared.Run(() =>
                {
                    foreach (var callback in callbacks) callback(prefix);
                    return onCommitted is null ? Task.CompletedTask : onCommitted(prefix, ct).AsTask();
                }, CancellationToken.None).Unwrap().ConfigureAwait(false);
            }
            var accelerators = variables.Select(v => v.Accelerator).Distinct().ToArray();
            Action<Exception>? onFailed = multi is null ? null : multi.ReportFailure;
            if (incr is not null) onFailed = onFailed is null ? incr.Fail : onFailed + incr.Fail;
            return new PlannedSave(pipeline, io, writePrefix ?? prefix, prefix, plan, accelerators, Committed, onFailed, clones);
        }
        catch (Exception ex)
        {
            incr?.Fail(ex);
            multiWorker?.ReportFailure(ex);
            throw;
        }
    }

    /// <summary>Every device variable a save of <paramref name="snapshot"/> reads (including the local parts of partitioned variables).</summary>
    private static Variable[] SavedVariables(ObjectGraphSnapshot snapshot)
    {
        var variables = new List<Variable>();
        foreach (var t in snapshot.Tensors)
        {
            if (t.Attribute is VariableSaveable v) variables.Add(v.Variable);
            else if (t.Attribute is Distributed.Variables.PartitionedSaveable p) variables.AddRange(p.Owner.Parts.Select(part => part.Variable));
        }
        return [.. variables];
    }

    // plan: null for a save that writes no files here (a multi-worker save's worker that owns nothing: it only reports).
    private async ValueTask<SaveHandle> QueueAsync(PlannedSave planned, CancellationToken cancellationToken)
    {
        try
        {
            if (QueueObserver is { } observer) await observer(cancellationToken).ConfigureAwait(false);
            // The pipeline copies on a stream of its own: work already queued on the variables' streams must land first.
            foreach (var accelerator in planned.Accelerators)
                await accelerator.DefaultStream.SynchronizeAsync(cancellationToken).ConfigureAwait(false);
            return Enqueue(planned, cancellationToken);
        }
        catch (Exception ex)
        {
            planned.Abandon(ex);
            throw;
        }
        finally
        {
            Volatile.Write(ref _queuing, 0);
        }
    }

    private SaveHandle Enqueue(PlannedSave p, CancellationToken cancellationToken)
    {
        var handle = p.Plan is null
            ? p.Pipeline.EnqueueCommitOnly(p.WritePrefix, p.OnCommitted, p.OnFailed, cancellationToken)
            : p.Pipeline.QueueSave(p.WritePrefix, p.Plan, p.IO, p.OnCommitted, p.OnFailed, p.CheckpointPrefix, cancellationToken);
        Track(handle);
        // The snapshots are read by the copy engine until staging ends; freed when the save is finished (either way).
        if (p.Clones.Length > 0)
            _ = handle.Completion.ContinueWith(static (_, state) => ((PlannedSave)state!).ReleaseClones(), p,
                CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return handle;
    }

    /// <summary>Remembers a queued save until it finishes (disposal reports the ones that fail after it began).</summary>
    private void Track(SaveHandle handle)
    {
        lock (_pipelineLock) _pendingSaves.Add(handle);
        _ = handle.Completion.ContinueWith(static (_, state) =>
        {
            var (saver, h) = ((TrackableSaver, SaveHandle))state!;
            lock (saver._pipelineLock) saver._pendingSaves.Remove(h);
        }, (this, handle), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>Saves queued through this saver that have not finished yet.</summary>
    internal SaveHandle[] PendingSaves
    {
        get
        {
            lock (_pipelineLock) return [.. _pendingSaves];
        }
    }

    /// <summary>
    /// The IO settings one save or restore runs with: those of a pipeline passed in <see cref="CheckpointOptions.Pipeline"/>
    /// (the caller configured it), else <see cref="CheckpointOptions.IO"/> of this call (default
    /// <see cref="CheckpointPipelineOptions.Default"/>) — applied by the saver's own pipeline per operation (its ring is
    /// re-created between operations when the shape changes), never frozen when that pipeline was created.
    /// </summary>
    internal static CheckpointPipelineOptions EffectiveIO(CheckpointOptions options, CheckpointPipeline pipeline) =>
        options.Pipeline is not null ? pipeline.Options : options.IO ?? CheckpointPipelineOptions.Default;

    private CheckpointPipeline GetOrCreatePipeline(Variable[] variables, CheckpointPipelineOptions? io)
    {
        lock (_pipelineLock)
        {
            if (_ownedPipeline is not null) return _ownedPipeline;
            // The ring goes on the accelerator holding the most bytes: values elsewhere (the save counter's own small CPU
            // accelerator comes first in node order) are copied to host memory while planning, which is meant for small state.
            // A graph without device variables (host state only) still needs a ring: use a small CPU accelerator of our own.
            var accelerator = variables.Length > 0
                ? variables.GroupBy(v => v.Accelerator).MaxBy(g => g.Sum(v => v.LengthInBytes))!.Key
                : (_ownedAccelerator ??= Accelerator.Create(AcceleratorKind.Cpu));
            return _ownedPipeline = new CheckpointPipeline(accelerator, io);
        }
    }

    /// <summary>
    /// Waits for every save queued through this saver (on any pipeline) and frees the IO pipeline it created (not one
    /// passed in options).
    /// </summary>
    /// <exception cref="IOException">A save that was still queued when disposal began failed: it is not on disk (every
    /// such failure is named; the first is the inner exception).</exception>
    public async ValueTask DisposeAsync()
    {
        CheckpointPipeline? owned;
        SaveHandle[] pending;
        lock (_pipelineLock)
        {
            owned = _ownedPipeline;
            _ownedPipeline = null;
            _pipelinesUsed.Clear();
            // Saves already finished were reported through their handles; only those still queued count here.
            pending = [.. _pendingSaves.Where(h => !h.Completion.IsCompleted)];
        }
        foreach (var handle in pending)
        {
            try { await handle.Completion.ConfigureAwait(false); }
            catch (Exception) { /* reported below, with every other failure */ }
        }
        if (owned is not null) await owned.DisposeAsync().ConfigureAwait(false);
        if (_ownedAccelerator is not null) await _ownedAccelerator.DisposeAsync().ConfigureAwait(false);
        _ownedAccelerator = null;
        ReleaseStatuses();
        ThrowIfAnyFailed(pending, "disposal");
    }

    /// <summary>
    /// Synchronous disposal: blocks until every save queued through this saver is finished (bounded by
    /// <see cref="CheckpointPipelineOptions.DisposeTimeout"/> of each pipeline), then frees the owned pipeline.
    /// </summary>
    /// <exception cref="TimeoutException">Saves still ran at the timeout (named in the message, also written to <see cref="Log"/>).</exception>
    /// <exception cref="IOException">A save that was still queued when disposal began failed: it is not on disk (every
    /// such failure is named; the first is the inner exception).</exception>
    internal void DisposePipelinesAndWait()
    {
        CheckpointPipeline? owned;
        CheckpointPipeline[] used;
        SaveHandle[] pending;
        lock (_pipelineLock)
        {
            owned = _ownedPipeline;
            _ownedPipeline = null;
            used = [.. _pipelinesUsed];
            _pipelinesUsed.Clear();
            // Saves already finished were reported through their handles; only those still queued count here.
            pending = [.. _pendingSaves.Where(h => !h.Completion.IsCompleted)];
        }
        try
        {
            foreach (var pipeline in used)
            {
                if (ReferenceEquals(pipeline, owned)) continue;
                // A pipeline passed in options is not ours to dispose: wait for its queue (which holds our saves) only.
                if (!pipeline.WaitForQueuedSaves(pipeline.Options.DisposeTimeout))
                    throw new TimeoutException($"Waited {pipeline.Options.DisposeTimeout.TotalSeconds:0.#} s for queued checkpoint saves; still not durable: {string.Join(", ", pipeline.PendingSaves)}.");
            }
            // The ring being idle is not the end of a save: its post-commit steps (multi-worker merge, state file,
            // pruning) run after it, holding their accelerator leases. Wait for every save queued through this saver.
            foreach (var handle in pending)
            {
                var timeout = used.Length > 0 ? used.Max(p => p.Options.DisposeTimeout) : CheckpointPipelineOptions.Default.DisposeTimeout;
                if (!WaitForCompletion(handle.Completion, timeout))
                    throw new TimeoutException($"Waited {timeout.TotalSeconds:0.#} s for queued checkpoint saves; still not durable: {string.Join(", ", pending.Where(h => !h.Completion.IsCompleted).Select(h => h.CheckpointPrefix))}.");
            }
            owned?.Dispose();
        }
        catch (TimeoutException ex)
        {
            Log?.WriteLine($"ERROR: {ex.Message}");
            throw;
        }
        if (_ownedAccelerator is not null)
        {
            _ownedAccelerator.Dispose();
            _ownedAccelerator = null;
        }
        ThrowIfAnyFailed(pending, "disposal");
    }

    /// <summary>
    /// Throws an <see cref="IOException"/> naming every failed save among <paramref name="handles"/> (all complete). Saves
    /// cancelled through their token are not failures: the caller asked for it.
    /// </summary>
    internal static void ThrowIfAnyFailed(IEnumerable<SaveHandle> handles, string when)
    {
        var failed = handles.Where(h => h.Completion.IsFaulted).ToArray();
        if (failed.Length == 0) return;
        var first = failed[0].Completion.Exception!.InnerException!;
        var lines = failed.Select(h => $"{h.CheckpointPrefix}: {h.Completion.Exception?.InnerException?.Message}");
        throw new IOException($"{failed.Length} checkpoint save(s) still queued at {when} failed and are NOT on disk: {string.Join("; ", lines)}", first);
    }
}

using System.Threading.Channels;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline.Saving;
using CheckpointGpu.Pipeline.Staging;

namespace CheckpointGpu.Pipeline;

/// <summary>
/// The IO device: streams tensors from accelerator memory through a pinned staging ring to asynchronous
/// positional writers (save), and from the data files back through the ring into device memory (restore),
/// keeping host memory bounded by the ring.
/// </summary>
/// <remarks>
/// <para><b>Save pipeline.</b> A <see cref="SavePlan"/> fixes every tensor's shard and offset before any byte moves.
/// The copy engine walks each shard in file-aligned chunks of <see cref="CheckpointPipelineOptions.SlotSizeInBytes"/>,
/// rents a ring slot (waiting while all are busy), and enqueues device→slot copies on the pipeline's stream
/// (tensors are packed at their planned offsets and may span slots). The checksum stage awaits each slot's copies
/// in file order and extends each tensor's CRC32C over the bytes in the slot (no second read). Writers (several in
/// flight) write the slot at its file offset with <see cref="RandomAccess"/> (O_DIRECT when available; the last,
/// unaligned block of a shard is zero-padded to 4096 and the file truncated to its exact length at commit). A slot
/// returns to the pool only when both its device copies and its write are done.</para>
/// <para><b>Commit protocol.</b> Every save publishes its files through Format's <see cref="BundleCommit"/> — the one
/// protocol of every writer (data → fsync → index → fsync → stale index removed → data renamed → index renamed, the
/// commit point → directory fsync), on <see cref="CheckpointPipelineOptions.Storage"/>. The <c>onCommitted</c> callback
/// then runs: the caller replaces the <c>checkpoint</c> state file (<see cref="BundleCommit.PublishState"/>: temporary,
/// fsync, rename, directory fsync) and only then prunes old checkpoints (<see cref="BundleCommit.DeleteCheckpoint"/>).
/// The state file therefore never names an incomplete checkpoint.</para>
/// <para>On failure before the commit point every temporary (and already renamed data) file is deleted.</para>
/// <para><b>Queued saves.</b> Saves run one at a time in call order; a queued save reads nothing until it starts.
/// A save never mixes values of two steps provided the caller does not mutate a buffer between
/// <see cref="QueueSave(string, SavePlan, Func{string, CancellationToken, ValueTask}?, CancellationToken)"/> and that buffer's barrier (<see cref="WaitUntilStagedAsync(DeviceBuffer, CancellationToken)"/>,
/// which covers every queued save) or the save's <see cref="SaveHandle.Snapshotted"/>; device work that produced the
/// values must have completed before <see cref="QueueSave(string, SavePlan, Func{string, CancellationToken, ValueTask}?, CancellationToken)"/> is called (the pipeline reads on its own stream).</para>
/// <para><b>Threads.</b> Blocking file-system calls (positional writes and reads of <see cref="LocalShardStorage"/>,
/// fsyncs, renames) run on Format's dedicated <see cref="BlockingIOThreads"/>, never on thread-pool workers, and the
/// pipeline leaves the process-wide thread pool's settings alone.</para>
/// <para><b>No save is dropped silently.</b> <see cref="DisposeAsync"/> awaits every queued save; <see cref="Dispose"/>
/// waits for them too, up to <see cref="CheckpointPipelineOptions.DisposeTimeout"/>, and throws a
/// <see cref="TimeoutException"/> naming the saves still running past it (it never returns as if they were durable). While
/// a save is queued or running it holds a use lease on <see cref="Accelerator"/>
/// (<see cref="Devices.Accelerator.AcquireUseLease"/>), so disposing the accelerator under it throws instead of freeing
/// the buffers the save reads. At process exit (<see cref="AppDomain.ProcessExit"/>) every live pipeline waits up to
/// <see cref="ProcessExitTimeout"/> for its queued saves and writes to standard error which checkpoints were not
/// written.</para>
/// <para><b>Thread-safety.</b> All public members are thread-safe. Dispose with <see cref="DisposeAsync"/> (or
/// <see cref="Dispose"/>), both of which wait for queued saves.</para>
/// </remarks>
public sealed class CheckpointPipeline : IAsyncDisposable, IDisposable
{
    private static readonly Lock s_liveSync = new();
    // Weak: an undisposed, idle pipeline must stay collectable (one with queued saves is reachable through its executor).
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<CheckpointPipeline, object?> s_live = new();
    private static int s_exitHookInstalled;
    private readonly ManualResetEventSlim _idle = new(initialState: true);
    private readonly Channel<SaveOperation> _queue = Channel.CreateUnbounded<SaveOperation>(new UnboundedChannelOptions { SingleReader = true });
    private readonly List<SaveOperation> _pending = [];
    private readonly Lock _sync = new();
    private readonly SemaphoreSlim _ringLock = new(1, 1);
    private readonly Task _executor;
    private long _copyOnWriteInUse;
    private int _disposed;

    /// <summary>Creates a pipeline: allocates and pre-faults the ring, creates the copy streams.</summary>
    /// <param name="accelerator">The accelerator whose buffers are saved and restored; not disposed here.</param>
    /// <param name="options">Settings; <see cref="CheckpointPipelineOptions.Default"/> when null.</param>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> is null.</exception>
    /// <exception cref="AcceleratorOutOfMemoryException">The ring cannot be allocated.</exception>
    public CheckpointPipeline(Accelerator accelerator, CheckpointPipelineOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        Accelerator = accelerator;
        Options = options ?? CheckpointPipelineOptions.Default;
        _ring = new StagingRing(accelerator, Options.SlotSizeInBytes, Options.SlotCount);
        Arena = new HostArena(accelerator);
        CopyStream = accelerator.CreateStream();
        RestoreStream = accelerator.CreateStream();
        _executor = Task.Run(RunQueueAsync);
        lock (s_liveSync) s_live.AddOrUpdate(this, null);
        if (Interlocked.Exchange(ref s_exitHookInstalled, 1) == 0) AppDomain.CurrentDomain.ProcessExit += (_, _) => OnProcessExit();
    }

    /// <summary>
    /// How long the process-exit hook waits for queued saves of every live pipeline before the process ends (default
    /// 60 s). Saves not durable by then are listed on standard error; their temporary files are left for the next
    /// <c>CheckpointManager</c> save to remove.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative (other than <see cref="Timeout.InfiniteTimeSpan"/>).</exception>
    public static TimeSpan ProcessExitTimeout
    {
        get => s_processExitTimeout;
        set
        {
            if (value < TimeSpan.Zero && value != Timeout.InfiniteTimeSpan) throw new ArgumentOutOfRangeException(nameof(value), value, "Must be non-negative or infinite.");
            s_processExitTimeout = value;
        }
    }

    private static TimeSpan s_processExitTimeout = TimeSpan.FromSeconds(60);

    /// <summary>Prefixes of the saves queued or running now, in queue order.</summary>
    public IReadOnlyList<string> PendingSaves
    {
        get
        {
            lock (_sync) return _pending.Select(op => op.Handle.CheckpointPrefix).ToArray();
        }
    }

    /// <summary>
    /// Blocks until no save is queued or running, or <paramref name="timeout"/> passes. For synchronous disposal paths
    /// only; async code awaits the handles' <see cref="SaveHandle.Completion"/>.
    /// </summary>
    /// <param name="timeout">How long to wait; <see cref="Timeout.InfiniteTimeSpan"/> waits forever.</param>
    /// <returns>True when the queue drained (saves may have failed: see their handles), false on timeout.</returns>
    public bool WaitForQueuedSaves(TimeSpan timeout) => _idle.Wait(timeout);

    /// <summary>The accelerator.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>
    /// The constructor's options: used by every save and restore that names none. A save or restore given options of its
    /// own (<see cref="QueueSave(string, SavePlan, CheckpointPipelineOptions, Func{string, CancellationToken, ValueTask}?, Action{Exception}?, string?, CancellationToken)"/>,
    /// <see cref="OpenRestore(TensorBundlePartIndex, CheckpointPipelineOptions)"/>) runs with those; <see cref="CheckpointPipelineOptions.DisposeTimeout"/>
    /// is always this object's.
    /// </summary>
    public CheckpointPipelineOptions Options { get; }

    /// <summary>Host memory held by the ring now, in bytes (slot count × slot size of the last operation's options).</summary>
    public long RingSizeInBytes => Volatile.Read(ref _ring).LengthInBytes;

    /// <summary>Host memory held by the full-snapshot arena, in bytes (0 until a <see cref="SnapshotPolicy.FullHostSnapshot"/> save ran).</summary>
    public long ArenaSizeInBytes => Arena.LengthInBytes;

    private StagingRing _ring;

    /// <summary>The staging ring; replaced only by <see cref="EnsureRing"/>, under <see cref="RingLock"/>.</summary>
    internal StagingRing Ring => Volatile.Read(ref _ring);

    /// <summary>
    /// Makes the ring match <paramref name="options"/> (slot size and count) before an operation uses it: IO options are
    /// applied per save and restore, not frozen at construction. Called with <see cref="RingLock"/> held, so no
    /// operation reads or fills the ring meanwhile (each drains its copies and IO before releasing the lock). A new ring
    /// is allocated before the old one is freed: when it cannot be allocated the old ring stays and the exception goes
    /// to the operation.
    /// </summary>
    /// <exception cref="AcceleratorOutOfMemoryException">The new ring cannot be allocated.</exception>
    internal StagingRing EnsureRing(CheckpointPipelineOptions options)
    {
        var ring = _ring;
        if (ring.SlotSizeInBytes == options.SlotSizeInBytes && ring.SlotCount == options.SlotCount) return ring;
        var fresh = new StagingRing(Accelerator, options.SlotSizeInBytes, options.SlotCount);
        Volatile.Write(ref _ring, fresh);
        ring.Dispose();
        return fresh;
    }

    internal HostArena Arena { get; }

    // A restore's scratch kept for the next restore where device memory is host memory
    // (CheckpointPipelineOptions.RetainRestoreScratch); used and changed only under RingLock.
    private DeviceBuffer? _retainedScratch;

    /// <summary>The kept restore scratch buffer, if any (for tests).</summary>
    internal DeviceBuffer? RetainedScratch => Volatile.Read(ref _retainedScratch);

    /// <summary>Host memory held by a kept restore scratch buffer, in bytes (0 when none is kept).</summary>
    public long RetainedRestoreScratchInBytes => Volatile.Read(ref _retainedScratch)?.LengthInBytes ?? 0;

    /// <summary>
    /// Takes the kept scratch when it is on <paramref name="accelerator"/> and holds at least <paramref name="lengthInBytes"/>
    /// bytes (a kept one too small is freed). Under <see cref="RingLock"/>.
    /// </summary>
    internal DeviceBuffer? TakeRetainedScratch(Accelerator accelerator, long lengthInBytes)
    {
        var kept = _retainedScratch;
        if (kept is null || !ReferenceEquals(kept.Accelerator, accelerator)) return null;
        Volatile.Write(ref _retainedScratch, null);
        if (!kept.IsDisposed && kept.LengthInBytes >= lengthInBytes) return kept;
        FreeScratch(kept);
        return null;
    }

    /// <summary>
    /// Keeps <paramref name="buffer"/> (on this pipeline's accelerator, whose device memory is host memory) for the next restore, or frees it.
    /// Under <see cref="RingLock"/>, after every copy into and out of it completed.
    /// </summary>
    internal void RetainOrFreeScratch(DeviceBuffer buffer, bool retain)
    {
        if (buffer.IsDisposed) return;
        retain &= ReferenceEquals(buffer.Accelerator, Accelerator) && buffer.Accelerator.DeviceMemoryIsHostMemory && Volatile.Read(ref _disposed) == 0;
        var previous = _retainedScratch;
        if (retain && (previous is null || previous.IsDisposed || previous.LengthInBytes <= buffer.LengthInBytes))
        {
            Volatile.Write(ref _retainedScratch, buffer);
            if (previous is not null && !ReferenceEquals(previous, buffer)) FreeScratch(previous);
            return;
        }
        FreeScratch(buffer);
    }

    /// <summary>Frees a kept restore scratch (a save is about to run, or the pipeline goes). Under <see cref="RingLock"/>.</summary>
    internal void FreeRetainedScratch()
    {
        var kept = _retainedScratch;
        if (kept is null) return;
        Volatile.Write(ref _retainedScratch, null);
        FreeScratch(kept);
    }

    private static void FreeScratch(DeviceBuffer buffer)
    {
        if (!buffer.IsDisposed && !buffer.Accelerator.IsDisposed) buffer.Dispose();
    }

    internal AcceleratorStream CopyStream { get; }

    // One copy engine per accelerator (TF's MultiDeviceSaver): device sources on other accelerators are copied into the
    // same ring slots by a stream of their own accelerator, feeding the same writers. Created on first use.
    private readonly Dictionary<Accelerator, AcceleratorStream> _foreignCopyStreams = new(ReferenceEqualityComparer.Instance);

    /// <summary>The copy stream for buffers of <paramref name="accelerator"/>: <see cref="CopyStream"/> for the pipeline's own.</summary>
    internal AcceleratorStream CopyStreamFor(Accelerator accelerator)
    {
        if (ReferenceEquals(accelerator, Accelerator)) return CopyStream;
        lock (_foreignCopyStreams)
        {
            if (!_foreignCopyStreams.TryGetValue(accelerator, out var stream))
                _foreignCopyStreams[accelerator] = stream = accelerator.CreateStream();
            return stream;
        }
    }

    /// <summary>Every copy stream created so far (the pipeline's own first).</summary>
    internal AcceleratorStream[] CopyStreams
    {
        get
        {
            lock (_foreignCopyStreams) return [CopyStream, .. _foreignCopyStreams.Values];
        }
    }

    internal AcceleratorStream RestoreStream { get; }

    internal SemaphoreSlim RingLock => _ringLock;

    /// <summary>Where blocking file-system calls of the commit run (fsync, rename).</summary>
    internal static BlockingIOThreads IOThreads => BlockingIOThreads.Shared;

    /// <summary>
    /// Queues a save of <paramref name="plan"/> to <paramref name="prefix"/> and returns at once with its handle (named
    /// <c>QueueSave</c>, not <c>…Async</c>: it returns a handle, whose <see cref="SaveHandle.Snapshotted"/> and
    /// <see cref="SaveHandle.Completion"/> are the tasks).
    /// </summary>
    /// <param name="prefix">Checkpoint prefix, e.g. <c>/train/ckpt-3</c>; its directory is created if missing.</param>
    /// <param name="plan">What to write where. Device sources may live on any accelerator: each accelerator gets a copy
    /// engine (stream) of its own feeding the same ring and writers; <see cref="Accelerator"/> hosts the ring.</param>
    /// <param name="onCommitted">
    /// Runs after the commit point and the directory flush, before <see cref="SaveHandle.Completion"/> completes and
    /// before the next queued save starts (so state-file updates and pruning happen in save order). Typically
    /// <see cref="BundleCommit.PublishState"/> then <see cref="BundleCommit.DeleteCheckpoint"/>. May be null.
    /// </param>
    /// <param name="cancellationToken">Cancels the save (temporary files are removed; in-flight copies and writes are drained first).</param>
    /// <returns>The handle.</returns>
    /// <exception cref="ArgumentException"><paramref name="prefix"/> is empty.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="plan"/> is null.</exception>
    /// <exception cref="ObjectDisposedException">The pipeline is disposed.</exception>
    public SaveHandle QueueSave(string prefix, SavePlan plan, Func<string, CancellationToken, ValueTask>? onCommitted = null,
        CancellationToken cancellationToken = default) =>
        QueueSave(prefix, plan, onCommitted, onFailed: null, checkpointPrefix: null, cancellationToken);

    /// <summary>
    /// <see cref="QueueSave(string, SavePlan, Func{string, CancellationToken, ValueTask}?, CancellationToken)"/> with a
    /// failure callback: <paramref name="onFailed"/> receives the first failure (including cancellation and a failure of
    /// <paramref name="onCommitted"/>) after temporaries are removed and before the handle faults — the place to tell
    /// others that this save will not arrive (a multi-worker save's <c>failed</c> marker).
    /// </summary>
    /// <param name="prefix">Checkpoint prefix.</param>
    /// <param name="plan">What to write where.</param>
    /// <param name="onCommitted">Runs after the commit point (see the other overload). May be null.</param>
    /// <param name="onFailed">Runs once on failure; an exception it throws is added to the handle's failures. May be null.</param>
    /// <param name="checkpointPrefix">The checkpoint this save is part of, when the files go elsewhere first (a multi-worker
    /// save's part is merged into it); reported by <see cref="SaveHandle.CheckpointPrefix"/>. Default: <paramref name="prefix"/>.</param>
    /// <param name="cancellationToken">Cancels the save.</param>
    /// <returns>The handle.</returns>
    /// <exception cref="ArgumentException"><paramref name="prefix"/> is empty.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="plan"/> is null.</exception>
    /// <exception cref="ObjectDisposedException">The pipeline is disposed.</exception>
    public SaveHandle QueueSave(string prefix, SavePlan plan, Func<string, CancellationToken, ValueTask>? onCommitted, Action<Exception>? onFailed,
        string? checkpointPrefix = null, CancellationToken cancellationToken = default) =>
        QueueSave(prefix, plan, Options, onCommitted, onFailed, checkpointPrefix, cancellationToken);

    /// <summary>
    /// Queues a save that runs with IO settings of its own (ring shape, writers, O_DIRECT, snapshot policy, trace,
    /// storage): when the save starts, the ring is re-created if its slot size or count differ from
    /// <paramref name="options"/> (between operations, never under one). Otherwise as
    /// <see cref="QueueSave(string, SavePlan, Func{string, CancellationToken, ValueTask}?, Action{Exception}?, string?, CancellationToken)"/>.
    /// </summary>
    /// <param name="prefix">Checkpoint prefix.</param>
    /// <param name="plan">What to write where.</param>
    /// <param name="options">This save's IO settings (<see cref="CheckpointPipelineOptions.DisposeTimeout"/> is ignored: the pipeline's applies).</param>
    /// <param name="onCommitted">Runs after the commit point. May be null.</param>
    /// <param name="onFailed">Runs once on failure. May be null.</param>
    /// <param name="checkpointPrefix">The checkpoint this save is part of (default <paramref name="prefix"/>).</param>
    /// <param name="cancellationToken">Cancels the save.</param>
    /// <returns>The handle. A ring that cannot be allocated faults its <see cref="SaveHandle.Completion"/> with <see cref="AcceleratorOutOfMemoryException"/>.</returns>
    /// <exception cref="ArgumentException"><paramref name="prefix"/> is empty.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="plan"/> or <paramref name="options"/> is null.</exception>
    /// <exception cref="ObjectDisposedException">The pipeline is disposed.</exception>
    public SaveHandle QueueSave(string prefix, SavePlan plan, CheckpointPipelineOptions options, Func<string, CancellationToken, ValueTask>? onCommitted = null,
        Action<Exception>? onFailed = null, string? checkpointPrefix = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(options);
        return Enqueue(new SaveOperation(this, options, prefix, plan, onCommitted, onFailed, writesFiles: true, cancellationToken) { CheckpointPrefix = checkpointPrefix ?? prefix });
    }

    /// <summary>
    /// Queues a step that writes no files but runs <paramref name="onCommitted"/> in queue order with the saves (after
    /// every earlier save's callback, before any later save starts): for a participant of a coordinated save that has
    /// nothing to write, such as a multi-worker save's worker that owns no tensor.
    /// </summary>
    /// <param name="prefix">The checkpoint the step belongs to (reported by <see cref="SaveHandle.Prefix"/>; nothing is written there).</param>
    /// <param name="onCommitted">The step.</param>
    /// <param name="onFailed">Runs once if the step fails or is cancelled, before the handle faults. May be null.</param>
    /// <param name="cancellationToken">Cancels the step.</param>
    /// <returns>A handle with an empty plan: <see cref="SaveHandle.Snapshotted"/> is already complete.</returns>
    /// <exception cref="ArgumentException"><paramref name="prefix"/> is empty.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="onCommitted"/> is null.</exception>
    /// <exception cref="ObjectDisposedException">The pipeline is disposed.</exception>
    public SaveHandle EnqueueCommitOnly(string prefix, Func<string, CancellationToken, ValueTask> onCommitted, Action<Exception>? onFailed = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        ArgumentNullException.ThrowIfNull(onCommitted);
        return Enqueue(new SaveOperation(this, Options, prefix, SavePlan.Create([]), onCommitted, onFailed, writesFiles: false, cancellationToken));
    }

    private SaveHandle Enqueue(SaveOperation op)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        // The lease makes Accelerator.Dispose throw while this save may still read device buffers or the ring.
        var reason = $"checkpoint save '{op.Handle.CheckpointPrefix}' (queued or running on its IO pipeline)";
        op.AcceleratorLease = Accelerator.AcquireUseLease(reason);
        foreach (var other in op.Accelerators)
            if (!ReferenceEquals(other, Accelerator)) op.ForeignLeases.Add(other.AcquireUseLease(reason));
        op.Retiring = () => Retire(op);
        lock (_sync)
        {
            _pending.Add(op);
            _idle.Reset();
        }
        if (!_queue.Writer.TryWrite(op))
        {
            Retire(op);
            throw new ObjectDisposedException(nameof(CheckpointPipeline));
        }
        return op.Handle;
    }

    private void Retire(SaveOperation op)
    {
        // Once: before the handle completes (SaveOperation.Retiring), or here at the latest.
        if (Interlocked.Exchange(ref op.RetiredFlag, 1) != 0) return;
        lock (_sync)
        {
            _pending.Remove(op);
            if (_pending.Count == 0) _idle.Set();
        }
        op.AcceleratorLease?.Dispose();
        op.AcceleratorLease = null;
        foreach (var lease in op.ForeignLeases) lease.Dispose();
        op.ForeignLeases.Clear();
    }

    /// <summary>
    /// Write barrier for the training loop (the optimizer calls it before updating a variable): completes when no
    /// running or queued save still needs to read <paramref name="buffer"/>. Fast path: nothing pending for the
    /// buffer → completes synchronously.
    /// </summary>
    /// <param name="buffer">The variable's device buffer.</param>
    /// <param name="cancellationToken">Cancels the wait (not the saves).</param>
    /// <returns>Completes when the buffer may be mutated. Never faults because a save failed.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="buffer"/> is null.</exception>
    /// <exception cref="OperationCanceledException">The wait was cancelled.</exception>
    public ValueTask WaitUntilStagedAsync(DeviceBuffer buffer, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        SaveOperation[] pending;
        lock (_sync)
        {
            if (_pending.Count == 0) return ValueTask.CompletedTask;
            pending = [.. _pending];
        }
        List<Task>? waits = null;
        foreach (var op in pending)
        {
            if (!op.References(buffer)) continue;
            var vt = op.WaitUntilStagedAsync(buffer, cancellationToken);
            if (!vt.IsCompletedSuccessfully) (waits ??= []).Add(vt.AsTask());
        }
        return waits is null ? ValueTask.CompletedTask : new ValueTask(Task.WhenAll(waits));
    }

    /// <summary>Opens a checkpoint for pipelined restore (reads and validates its index; data files open lazily).</summary>
    /// <param name="prefix">Checkpoint prefix.</param>
    /// <returns>The session; dispose it to close files and free the prefetch cache.</returns>
    /// <exception cref="FileNotFoundException">The index does not exist.</exception>
    /// <exception cref="CheckpointFormatException">The index is corrupt.</exception>
    /// <exception cref="NotSupportedException">The bundle is big-endian (use <see cref="TensorBundleReader"/>).</exception>
    /// <exception cref="ObjectDisposedException">The pipeline is disposed.</exception>
    public RestoreSession OpenRestore(string prefix)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return OpenRestore(TensorBundlePartIndex.Read(prefix));
    }

    /// <summary>Opens a checkpoint for pipelined restore over an index parsed elsewhere (read once by the caller, or broadcast).</summary>
    /// <param name="index">The checkpoint's prefix, header and entries.</param>
    /// <returns>The session; dispose it to close files and free the prefetch cache.</returns>
    /// <exception cref="NotSupportedException">The bundle is big-endian (use <see cref="TensorBundleReader"/>).</exception>
    /// <exception cref="ObjectDisposedException">The pipeline is disposed.</exception>
    public RestoreSession OpenRestore(TensorBundlePartIndex index)
    {
        ArgumentNullException.ThrowIfNull(index);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return OpenRestore(index, Options);
    }

    /// <summary>
    /// Opens a checkpoint for pipelined restore with IO settings of its own (ring shape, readers, prefetch bytes,
    /// O_DIRECT, storage): when its reads start, the ring is re-created if its slot size or count differ from
    /// <paramref name="options"/> (between operations, never under one).
    /// </summary>
    /// <param name="index">The checkpoint's prefix, header and entries.</param>
    /// <param name="options">This restore's IO settings (<see cref="CheckpointPipelineOptions.DisposeTimeout"/> is ignored).</param>
    /// <returns>The session; dispose it to close files and free the prefetch cache.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="index"/> or <paramref name="options"/> is null.</exception>
    /// <exception cref="NotSupportedException">The bundle is big-endian (use <see cref="TensorBundleReader"/>).</exception>
    /// <exception cref="ObjectDisposedException">The pipeline is disposed.</exception>
    public RestoreSession OpenRestore(TensorBundlePartIndex index, CheckpointPipelineOptions options)
    {
        ArgumentNullException.ThrowIfNull(index);
        ArgumentNullException.ThrowIfNull(options);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (index.Header.Endianness != BundleEndianness.Little)
            throw new NotSupportedException($"{BundleNaming.IndexFile(index.Prefix)}: big-endian bundles are not restored by the pipeline; use TensorBundleReader.");
        return new RestoreSession(this, options, index.Prefix, index.Header, index.Entries);
    }

    /// <summary>Waits for queued saves, then frees the ring, the arena and the streams.</summary>
    /// <returns>Completes when everything is released.</returns>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _queue.Writer.TryComplete();
        await _executor.ConfigureAwait(false);
        await _ringLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!Accelerator.IsDisposed)
            {
                foreach (var stream in CopyStreams)
                    if (!stream.Accelerator.IsDisposed) await stream.SynchronizeAsync().ConfigureAwait(false);
                await RestoreStream.SynchronizeAsync().ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is AcceleratorException or ObjectDisposedException)
        {
            // Reported by the operation that failed.
        }
        ReleaseResources();
        _ringLock.Release();
    }

    /// <summary>
    /// Synchronous disposal: waits (blocking) for queued saves up to <see cref="CheckpointPipelineOptions.DisposeTimeout"/>,
    /// then frees the ring, the arena and the streams.
    /// </summary>
    /// <exception cref="TimeoutException">Saves were still queued or running at the timeout (listed in the message); they
    /// keep running and nothing is freed under them, but they are not known to be durable.</exception>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _queue.Writer.TryComplete();
        if (!_idle.Wait(Options.DisposeTimeout))
        {
            var pending = PendingSaves;
            throw new TimeoutException(
                $"CheckpointPipeline.Dispose waited {Options.DisposeTimeout.TotalSeconds:0.#} s and {pending.Count} save(s) are still not durable: {string.Join(", ", pending)}. "
                + "They keep running; await their handles' Completion (or use DisposeAsync) to know when they are written.");
        }
        if (!_ringLock.Wait(Options.DisposeTimeout))
            throw new TimeoutException($"CheckpointPipeline.Dispose waited {Options.DisposeTimeout.TotalSeconds:0.#} s for a restore still reading through the ring.");
        try
        {
            try
            {
                if (!Accelerator.IsDisposed)
                {
                    foreach (var stream in CopyStreams)
                        if (!stream.Accelerator.IsDisposed) stream.Synchronize();
                    RestoreStream.Synchronize();
                }
            }
            catch (Exception ex) when (ex is AcceleratorException or ObjectDisposedException)
            {
                // Reported by the operation that failed.
            }
            ReleaseResources();
        }
        finally
        {
            _ringLock.Release();
        }
    }

    private void ReleaseResources()
    {
        lock (s_liveSync) s_live.Remove(this);
        lock (_foreignCopyStreams)
        {
            foreach (var stream in _foreignCopyStreams.Values)
                if (!stream.Accelerator.IsDisposed) stream.Dispose();
            _foreignCopyStreams.Clear();
        }
        // The accelerator may already be gone (disposed with no save pending): its children were freed with it.
        FreeRetainedScratch();
        if (!Accelerator.IsDisposed)
        {
            CopyStream.Dispose();
            RestoreStream.Dispose();
            Ring.Dispose();
            Arena.Dispose();
        }
    }

    /// <summary>At process exit: wait (bounded) for queued saves of every live pipeline; report what was not written.</summary>
    private static void OnProcessExit()
    {
        CheckpointPipeline[] live;
        lock (s_liveSync) live = [.. s_live.Select(kv => kv.Key)];
        var deadline = ProcessExitTimeout == Timeout.InfiniteTimeSpan ? DateTime.MaxValue : DateTime.UtcNow + ProcessExitTimeout;
        foreach (var pipeline in live)
        {
            var pending = pipeline.PendingSaves;
            if (pending.Count == 0) continue;
            Console.Error.WriteLine($"Checkpoint.Gpu: the process is exiting with {pending.Count} checkpoint save(s) queued ({string.Join(", ", pending)}); waiting up to {ProcessExitTimeout.TotalSeconds:0.#} s for them.");
            var left = deadline == DateTime.MaxValue ? Timeout.InfiniteTimeSpan : deadline - DateTime.UtcNow;
            if (left < TimeSpan.Zero) left = TimeSpan.Zero;
            if (!pipeline.WaitForQueuedSaves(left))
                Console.Error.WriteLine($"Checkpoint.Gpu: NOT WRITTEN at exit (still running after {ProcessExitTimeout.TotalSeconds:0.#} s): {string.Join(", ", pipeline.PendingSaves)}. The state file names only earlier checkpoints.");
        }
    }

    internal bool TryReserveCopyOnWrite(long bytes)
    {
        var budget = Options.CopyOnWriteBudgetInBytes;
        while (true)
        {
            var cur = Interlocked.Read(ref _copyOnWriteInUse);
            if (cur + bytes > budget) return false;
            if (Interlocked.CompareExchange(ref _copyOnWriteInUse, cur + bytes, cur) == cur) return true;
        }
    }

    internal void ReleaseCopyOnWrite(long bytes) => Interlocked.Add(ref _copyOnWriteInUse, -bytes);

    private async Task RunQueueAsync()
    {
        // Saves hold the ring one at a time, in call order (stream + commit). What follows the commit point — the
        // onCommitted callback: a multi-worker merge, the state file, pruning — runs on a chain of its own, still in call
        // order, so the next save streams while the previous one finishes.
        var completions = Task.CompletedTask;
        await foreach (var op in _queue.Reader.ReadAllAsync().ConfigureAwait(false))
        {
            var committed = false;
            await _ringLock.WaitAsync().ConfigureAwait(false);
            try
            {
                committed = await op.RunAsync().ConfigureAwait(false);
            }
            finally
            {
                _ringLock.Release();
            }
            completions = CompleteInOrderAsync(completions, op, committed);
        }
        await completions.ConfigureAwait(false);
    }

    private async Task CompleteInOrderAsync(Task previous, SaveOperation op, bool committed)
    {
        try
        {
            await previous.ConfigureAwait(false);   // never faults: CompleteAsync reports through the handle
            if (committed) await op.CompleteAsync().ConfigureAwait(false);
        }
        finally
        {
            Retire(op);
        }
    }
}

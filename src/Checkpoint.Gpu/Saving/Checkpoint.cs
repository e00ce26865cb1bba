using System.Text;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;

namespace CheckpointGpu;

/// <summary>
/// Groups trackable objects under named root dependencies and saves/restores them in TensorFlow's object-based
/// checkpoint format (TF's <c>tf.train.Checkpoint</c>, <c>tensorflow/python/checkpoint/checkpoint.py</c>; spec §6–§7).
/// </summary>
/// <remarks>
/// <para><b>Node numbering.</b> The constructor's dependencies are tracked in sorted name order (as TF sorts
/// <c>**kwargs</c>), so node ids and bytes match TF's for the same objects. <see cref="SaveCounter"/> (int64 scalar,
/// edge and <c>full_name</c> <c>save_counter</c>) is created lazily by the first <see cref="Save"/>,
/// <see cref="Restore"/> or access, and therefore follows the constructor's dependencies.</para>
/// <para><b>Save vs. Write.</b> <see cref="Save"/> increments the counter first, writes <c>prefix-N</c> and rewrites the
/// <c>checkpoint</c> state file (only the new path). <see cref="Write"/> writes exactly the prefix, with the counter
/// only if it already exists, and no state file. <b>Restore vs. Read</b> (spec §7.6): <see cref="Restore"/> also
/// accepts a SavedModel directory and creates the counter after matching (so it continues from the checkpoint);
/// <see cref="Read"/> does only the matching.</para>
/// <para><b>Lifetime.</b> The checkpoint references, but does not own, its dependencies. It owns the save counter.
/// <see cref="Dispose"/> reports checkpoint values that were never matched by its restores (unless
/// <see cref="LoadStatus.ExpectPartial"/> was called) to <see cref="Log"/>.</para>
/// <para>Thread-safety: not thread-safe.</para>
/// </remarks>
public sealed class Checkpoint : AutoTrackable, IDisposable, IAsyncDisposable
{
    private readonly TrackableSaver _saver;
    private Variable? _saveCounter;
    private Accelerator? _counterAccelerator;
    private bool _disposed;

    /// <summary>Creates a checkpoint with no dependencies yet (add them with <see cref="AutoTrackable.Track{T}(string, T)"/>).</summary>
    public Checkpoint() { _saver = new TrackableSaver(this); }

    /// <summary>
    /// Creates a checkpoint over named root dependencies (TF's <c>Checkpoint(**kwargs)</c>), tracked in sorted name order.
    /// </summary>
    /// <param name="dependencies">Name/object pairs, e.g. <c>("model", model), ("optimizer", optimizer)</c>.</param>
    /// <exception cref="ArgumentException">A value is not a <see cref="Trackable"/> (TF: <c>ValueError</c>), a name is empty, duplicated or <c>save_counter</c>.</exception>
    public Checkpoint(params (string Name, object Value)[] dependencies) : this()
    {
        ArgumentNullException.ThrowIfNull(dependencies);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, value) in dependencies)
        {
            ArgumentException.ThrowIfNullOrEmpty(name, nameof(dependencies));
            if (!seen.Add(name)) throw new ArgumentException($"Dependency '{name}' is given twice.", nameof(dependencies));
            if (name == CheckpointKeys.SaveCounter) throw new ArgumentException("'save_counter' is reserved for the checkpoint's own counter.", nameof(dependencies));
            if (value is not Trackable)
                throw new ArgumentException(
                    $"Checkpoint was expecting a trackable object (an object derived from {nameof(Trackable)}) for '{name}', got {(value is null ? "null" : value.GetType().FullName)}. "
                    + "If you believe this object should be trackable (i.e. it is part of the model state), derive it from Trackable or AutoTrackable.",
                    nameof(dependencies));
        }
        // TF sorts kwargs by key (Python code-point order = UTF-8 byte order); numbering depends on it.
        foreach (var (name, value) in dependencies.OrderBy(d => Encoding.UTF8.GetBytes(d.Name), ByteOrder.Instance))
            TrackDependency(name, (Trackable)value);
    }

    /// <summary>Creates a checkpoint over named root dependencies, tracked in sorted name order.</summary>
    /// <param name="dependencies">Name/object pairs.</param>
    /// <exception cref="ArgumentException">A name is empty, duplicated or <c>save_counter</c>, or a value is null.</exception>
    public Checkpoint(IEnumerable<KeyValuePair<string, Trackable>> dependencies)
        : this((dependencies ?? throw new ArgumentNullException(nameof(dependencies))).Select(kv => (kv.Key, (object)kv.Value)).ToArray())
    {
    }

    /// <summary>Where warnings go (unmatched values, inconsistent references). Default standard error; <see langword="null"/> silences.</summary>
    public TextWriter? Log { get => _saver.Log; set => _saver.Log = value; }

    /// <summary>The lower-level saver rooted at this checkpoint.</summary>
    public TrackableSaver Saver => _saver;

    /// <summary>True once the save counter exists (after a save, restore or access to <see cref="SaveCounter"/>).</summary>
    public bool HasSaveCounter => _saveCounter is not null;

    /// <summary>
    /// The number of <see cref="Save"/> calls (int64 scalar variable, edge and <c>full_name</c> <c>save_counter</c>);
    /// created at 0 on first access, or restored from a pending checkpoint value.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The checkpoint is disposed.</exception>
    public Variable SaveCounter
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_saveCounter is null)
            {
                // TF places the counter on /cpu:0; ours lives on a CPU accelerator owned by this checkpoint.
                _counterAccelerator ??= Accelerator.Create(AcceleratorKind.Cpu);
                _saveCounter = AddVariable(CheckpointKeys.SaveCounter, _counterAccelerator, DType.Int64, TensorShape.Scalar,
                    VariableInitializer.Zeros, CheckpointKeys.SaveCounter);
            }
            return _saveCounter;
        }
    }

    /// <summary>
    /// Increments <see cref="SaveCounter"/>, writes the checkpoint at <c>&lt;filePrefix&gt;-&lt;counter&gt;</c>, then
    /// rewrites <c>&lt;dir of filePrefix&gt;/checkpoint</c> to name only that prefix (relative path).
    /// </summary>
    /// <param name="filePrefix">Prefix without the number, e.g. <c>/train/ckpt</c>.</param>
    /// <param name="options">Options; frozen by this call.</param>
    /// <returns>The prefix written, e.g. <c>/train/ckpt-1</c>.</returns>
    /// <exception cref="IOException">Writing failed (the counter stays incremented, as in TF).</exception>
    public string Save(string filePrefix, CheckpointOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(filePrefix);
        var number = IncrementSaveCounter();
        var path = _saver.Save(filePrefix, number, options);
        // In a multi-worker save only the chief records the checkpoint (after the merge published it).
        if (options?.MultiWorker is not { IsChief: false }) TrackableSaver.UpdateStateFile(path, (options ?? CheckpointOptions.Default).Storage);
        return path;
    }

    /// <summary>Writes the checkpoint at exactly <paramref name="filePrefix"/>: no counter change, no state file.</summary>
    /// <param name="filePrefix">Prefix path.</param>
    /// <param name="options">Options; frozen by this call.</param>
    /// <returns>The prefix written.</returns>
    /// <exception cref="IOException">Writing failed.</exception>
    public string Write(string filePrefix, CheckpointOptions? options = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _saver.Write(filePrefix, options);
    }

    /// <summary>
    /// Restores (TF's <c>Checkpoint.restore</c>): <see cref="Read"/>, accepting a SavedModel directory (reads
    /// <c>variables/variables</c>), then creates <see cref="SaveCounter"/> if missing (restored from the checkpoint when
    /// it has one). <see langword="null"/> returns an <see cref="InitializationOnlyStatus"/>.
    /// </summary>
    /// <param name="savePath">Checkpoint prefix (e.g. <c>ckpt-3</c>), SavedModel directory, or <see langword="null"/>.</param>
    /// <param name="options">Options; frozen by this call.</param>
    /// <returns>The status.</returns>
    /// <exception cref="FileNotFoundException">The checkpoint does not exist (the message hints at a missing <c>-N</c> suffix).</exception>
    /// <exception cref="CheckpointFormatException">The checkpoint is corrupt (a checksum mismatch leaves the variable's previous value).</exception>
    /// <exception cref="CheckpointMismatchException">A value's dtype or shape differs from its live object's.</exception>
    /// <remarks><see cref="RestoreAsync"/> awaited; the wait does not need the caller's synchronization context.</remarks>
    public LoadStatus Restore(string? savePath, CheckpointOptions? options = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return AfterRestore(_saver.Restore(SavedModelVariables(savePath), options));
    }

    /// <summary>
    /// The restore itself (<see cref="Restore"/> is this, awaited): the object graph is matched first, then the values of
    /// existing variables are streamed through the IO pipeline (O_DIRECT reads in file order, each tensor's checksum
    /// verified before any byte reaches its device buffer), and values of objects not created yet are prefetched into a
    /// bounded, verified host cache, so creating them later costs one host-to-device copy. See
    /// <see cref="TrackableSaver.RestoreAsync"/>.
    /// </summary>
    /// <param name="savePath">Checkpoint prefix, a SavedModel directory, or <see langword="null"/> for an initialization-only status.</param>
    /// <param name="options">Options; <see cref="CheckpointOptions.Pipeline"/> picks the IO device.</param>
    /// <param name="cancellationToken">Cancels the reads.</param>
    /// <returns>The load status (assertions as for <see cref="Restore"/>).</returns>
    /// <exception cref="ObjectDisposedException">The checkpoint is disposed.</exception>
    /// <exception cref="FileNotFoundException">The checkpoint does not exist.</exception>
    /// <exception cref="CheckpointFormatException">A corrupt file or a checksum mismatch (the variable keeps its previous value).</exception>
    public async Task<LoadStatus> RestoreAsync(string? savePath, CheckpointOptions? options = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return AfterRestore(await _saver.RestoreAsync(SavedModelVariables(savePath), options, cancellationToken).ConfigureAwait(false));
    }

    /// <summary>
    /// <see cref="Restore(string?, CheckpointOptions?)"/> from a checkpoint's index and object graph read elsewhere — by
    /// one rank of a multi-worker job and broadcast to the others (<c>Checkpoint.Gpu.Mpi</c>'s <c>MpiRestore</c>) — so
    /// M workers do not read the metadata M times; each reads only the tensor values (and slices) it restores.
    /// </summary>
    /// <param name="metadata">The checkpoint's metadata (<see cref="Distributed.CheckpointMetadata.Read"/>).</param>
    /// <param name="options">Options; frozen by this call.</param>
    /// <returns>The status.</returns>
    /// <exception cref="ObjectDisposedException">The checkpoint is disposed.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="metadata"/> is null.</exception>
    /// <exception cref="FileNotFoundException">A data file is missing.</exception>
    /// <exception cref="CheckpointFormatException">The metadata or a data file is corrupt.</exception>
    /// <exception cref="CheckpointMismatchException">A value's dtype or shape differs from its live object's.</exception>
    public LoadStatus RestoreFromMetadata(Distributed.CheckpointMetadata metadata, CheckpointOptions? options = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return AfterRestore(_saver.RestoreFromMetadata(metadata, options));
    }

    private static string? SavedModelVariables(string? savePath) =>
        savePath is not null && Directory.Exists(savePath)
            && (File.Exists(Path.Combine(savePath, "saved_model.pb")) || File.Exists(Path.Combine(savePath, "saved_model.pbtxt")))
            ? Path.Combine(savePath, "variables", "variables")
            : savePath;

    private LoadStatus AfterRestore(LoadStatus status)
    {
        _ = SaveCounter;   // created after matching: consumes a deferred "save_counter" value (spec §7.6)
        if (status is NameBasedLoadStatus nameBased) nameBased.AddToOptionallyRestored(SaveCounter);
        return status;
    }

    /// <summary>
    /// Restores by matching only (TF's <c>Checkpoint.read</c>), for checkpoints written by <see cref="Write"/>: does not
    /// create the save counter.
    /// </summary>
    /// <param name="savePath">Checkpoint prefix.</param>
    /// <param name="options">Options; frozen by this call.</param>
    /// <returns>The status.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="savePath"/> is null.</exception>
    /// <exception cref="FileNotFoundException">The checkpoint does not exist.</exception>
    /// <exception cref="CheckpointMismatchException">A value's dtype or shape differs from its live object's.</exception>
    public LoadStatus Read(string savePath, CheckpointOptions? options = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(savePath);
        return _saver.Restore(savePath, options);
    }

    /// <summary>Adds one to the counter and returns the new value.</summary>
    internal long IncrementSaveCounter()
    {
        var counter = SaveCounter;
        var next = counter.Read<long>()[0] + 1;
        counter.Assign<long>([next]);
        return next;
    }

    internal void WriteUnnumbered(string prefix, CheckpointOptions? options) => _saver.Save(prefix, 0, options);

    // Issue 14 hook: incremental saves of a CheckpointManager (TrackableSaver.Incremental.cs).
    internal IncrementalSaveReport WriteUnnumberedIncremental(string prefix, CheckpointOptions? options, IncrementalSaveOptions incremental,
        Incremental.IncrementalHistory history) => _saver.WriteIncremental(prefix, options ?? CheckpointOptions.Default, incremental, history);

    internal void ThrowIfQueuingAsyncSave() => _saver.ThrowIfQueuing();

    internal ValueTask<Pipeline.SaveHandle> WriteUnnumberedAsync(string prefix, CheckpointOptions? options,
        Func<string, CancellationToken, ValueTask>? onCommitted, CancellationToken cancellationToken, Incremental.IncrementalRequest? incremental = null) =>
        _saver.SaveAsyncCore(prefix, options ?? CheckpointOptions.Default, onCommitted, cancellationToken, incremental);

    /// <summary>
    /// Asynchronous <see cref="Save"/>: increments <see cref="SaveCounter"/>, queues <c>filePrefix-N</c> on the IO pipeline
    /// and returns its handle; the <c>checkpoint</c> state file is rewritten after the checkpoint is durable, in save order.
    /// </summary>
    /// <param name="filePrefix">Prefix, e.g. <c>/train/ckpt</c>.</param>
    /// <param name="options">Options; <see cref="CheckpointOptions.Pipeline"/> picks the IO device.</param>
    /// <param name="cancellationToken">Cancels the save.</param>
    /// <returns>The save's handle: <c>Snapshotted</c> (variables may be mutated) and <c>Completion</c> (durable, state file written).</returns>
    /// <exception cref="ArgumentException"><paramref name="filePrefix"/> is empty.</exception>
    /// <exception cref="ObjectDisposedException">The checkpoint is disposed.</exception>
    /// <remarks>With <see cref="CheckpointOptions.MultiWorker"/>, see <see cref="TrackableSaver.SaveAsync"/>: <c>Completion</c>
    /// means published by the chief, which alone rewrites the state file.</remarks>
    public ValueTask<Pipeline.SaveHandle> SaveAsync(string filePrefix, CheckpointOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(filePrefix);
        ObjectDisposedException.ThrowIf(_disposed, this);
        cancellationToken.ThrowIfCancellationRequested();
        _saver.ThrowIfQueuing();
        // The counter lives on its own small accelerator, so the save copies its value while planning (before this call
        // first yields): incrementing it for the next save cannot leak into this one.
        var number = IncrementSaveCounter();
        return _saver.SaveAsyncCore(TrackableSaver.NumberedPrefix(filePrefix, number), options ?? CheckpointOptions.Default,
            (path, _) =>
            {
                // In a multi-worker save only the chief records the checkpoint (after the merge published it).
                if (options?.MultiWorker is not { IsChief: false }) TrackableSaver.UpdateStateFile(path, (options ?? CheckpointOptions.Default).Storage);
                return ValueTask.CompletedTask;
            }, cancellationToken);
    }

    /// <summary>Asynchronous <see cref="Write"/>: queues exactly <paramref name="filePrefix"/> (no counter, no state file).</summary>
    /// <param name="filePrefix">Prefix.</param>
    /// <param name="options">Options; <see cref="CheckpointOptions.Pipeline"/> picks the IO device.</param>
    /// <param name="cancellationToken">Cancels the save.</param>
    /// <returns>The save's handle.</returns>
    /// <exception cref="ObjectDisposedException">The checkpoint is disposed.</exception>
    public ValueTask<Pipeline.SaveHandle> WriteAsync(string filePrefix, CheckpointOptions? options = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _saver.WriteAsync(filePrefix, options, cancellationToken);
    }

    /// <summary>
    /// Write barrier for training loops: completes when no queued or running asynchronous save still needs
    /// <paramref name="variable"/>'s current device bytes. The Nn optimizers call it (through their write barrier) before
    /// updating a variable; it completes synchronously when nothing is pending.
    /// </summary>
    /// <param name="variable">The variable about to be mutated.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <exception cref="ArgumentNullException"><paramref name="variable"/> is null.</exception>
    public ValueTask WaitUntilStagedAsync(Variable variable, CancellationToken cancellationToken = default) =>
        _saver.WaitUntilStagedAsync(variable, cancellationToken);

    /// <summary>Waits for queued asynchronous saves, frees the IO pipeline this checkpoint created, then disposes as <see cref="Dispose"/>.</summary>
    /// <exception cref="IOException">A save still queued when disposal began failed; it is named in the message and NOT on disk.</exception>
    public async ValueTask DisposeAsync()
    {
        try
        {
            await _saver.DisposeAsync().ConfigureAwait(false);
        }
        finally
        {
            Dispose();
        }
    }

    /// <summary>
    /// Waits (blocking) until every queued asynchronous save is durable — or failed — then frees the IO pipeline this
    /// checkpoint created and the save counter, and reports unmatched checkpoint values of its restores. Plain
    /// <c>using</c> is therefore safe with <see cref="SaveAsync"/> and <c>CheckpointManager.SaveAsync</c>: no queued save is
    /// dropped. In async code prefer <c>await using</c> (<see cref="DisposeAsync"/>), which waits without blocking a thread.
    /// </summary>
    /// <exception cref="TimeoutException">Saves were still running after <see cref="Pipeline.CheckpointPipelineOptions.DisposeTimeout"/>
    /// (default 10 minutes); they are named in the message and on <see cref="Log"/>, and are not known to be durable.</exception>
    /// <exception cref="IOException">A save still queued when disposal began failed (for example the disk filled up); it is
    /// named in the message and NOT on disk.</exception>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _saver.ReleaseStatuses();
        try
        {
            _saver.DisposePipelinesAndWait();
        }
        catch (TimeoutException)
        {
            // Saves still run and read the counter's snapshot on its accelerator: leave both to them.
            throw;
        }
        catch
        {
            DisposeCounter();
            throw;
        }
        DisposeCounter();
    }

    private void DisposeCounter()
    {
        _saveCounter?.Dispose();
        _counterAccelerator?.Dispose();
    }

    private sealed class ByteOrder : IComparer<byte[]>
    {
        public static ByteOrder Instance { get; } = new();
        public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
    }
}

using System.Globalization;
using System.Runtime.InteropServices;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;

namespace CheckpointGpu;

/// <summary>
/// Numbers, records and prunes the checkpoints of one <see cref="Checkpoint"/> in a directory (TF's
/// <c>tf.train.CheckpointManager</c>, <c>tensorflow/python/checkpoint/checkpoint_management.py</c>; spec §8).
/// </summary>
/// <remarks>
/// <para><b>Protocol of <see cref="Save"/>.</b> (1) with an interval, skip unless the step advanced enough;
/// (2) increment the save counter; (3) write <c>&lt;directory&gt;/&lt;name&gt;-&lt;n&gt;</c> completely (data files, then the
/// index, which is the commit point); (4) append it to the managed list and rewrite the <c>checkpoint</c> state file;
/// (5) sweep: delete the oldest managed checkpoints beyond <see cref="MaxToKeep"/> (or preserve one per
/// <see cref="KeepCheckpointEvery"/>); (6) rewrite the state file without the deleted ones. A crash at any point
/// leaves a state file that names only complete checkpoints.</para>
/// <para><b>Restarts.</b> The constructor recovers the managed list from the state file: entries with timestamps newer
/// than <c>last_preserved_timestamp</c> are managed (and may be deleted); older or untimestamped ones (written by
/// <see cref="Checkpoint.Save"/> or TF1's <c>Saver</c>) are never deleted and drop out of the state at the next save.
/// Only <c>&lt;prefix&gt;.index</c> and <c>&lt;prefix&gt;.data-?????-of-?????</c> of managed entries are ever deleted.</para>
/// <para><b>One saver per directory.</b> The first save takes the directory's <see cref="CheckpointDirectoryLock"/>
/// (<c>checkpoint.lock</c>, an OS file lock that dies with the process) and holds it until <see cref="Dispose"/> or process
/// exit; a manager in another process then fails to save with <see cref="CheckpointDirectoryLockedException"/> naming
/// the holder's pid. Restoring takes no lock. In a multi-worker save only the chief takes it (workers write only their
/// parts under <c>&lt;prefix&gt;_temp/</c>).</para>
/// <para><b>Debris.</b> Right after taking the lock, the first save removes what killed saves left in the directory
/// (<see cref="CheckpointDebris"/>: <c>*.tempstate&lt;n&gt;</c> bundle temporaries, <c>checkpoint.tmp&lt;hex&gt;</c>,
/// <c>&lt;prefix&gt;_temp/</c> part directories) — only names matching our own temporary patterns.</para>
/// <para><b>Preemption.</b> <see cref="ArmPreemption"/> turns SIGTERM/SIGINT into a request the training loop honours at
/// its next step boundary with <see cref="SaveIfPreemptedAsync"/> (TF's <c>PreemptionCheckpointHandler</c>); see there.</para>
/// <para>Thread-safety: not thread-safe (the signal handler only sets flags).</para>
/// </remarks>
public sealed class CheckpointManager : IDisposable
{
    private readonly object _bookkeeping = new();
    private CheckpointDirectoryLock? _lock;
    private bool _disposed;
    private PreemptionOptions? _preemption;
    private readonly List<PosixSignalRegistration> _signalRegistrations = [];
    private readonly CancellationTokenSource _preemptionCts = new();
    private int _preemptionSignal;   // 0 = none, else the PosixSignal value + 1000 (PosixSignal values are negative)
    private Timer? _deadlineTimer;
    private int _finalCheckpointDone;

    private readonly List<(string Path, double Timestamp)> _maybeDelete = [];
    private readonly string _prefixBase;
    private readonly Func<long>? _stepCounter;
    private readonly Action? _initialize;
    private readonly TimeProvider _time;
    private double _lastPreservedTimestamp;
    private long? _lastCheckpointStep;

    /// <summary>Creates a manager and recovers its state from <c>&lt;directory&gt;/checkpoint</c>.</summary>
    /// <param name="checkpoint">The checkpoint to save and restore; referenced, not owned.</param>
    /// <param name="directory">Where checkpoints and the state file live (created on first save).</param>
    /// <param name="maxToKeep">How many managed checkpoints to keep; <see langword="null"/> keeps all (never deletes).</param>
    /// <param name="keepCheckpointEvery">Additionally preserve (never delete) one checkpoint per this interval; <see langword="null"/> for none (TF's <c>keep_checkpoint_every_n_hours</c>).</param>
    /// <param name="checkpointName">Prefix name; checkpoints are <c>&lt;directory&gt;/&lt;name&gt;-&lt;n&gt;</c>. Default <c>ckpt</c>.</param>
    /// <param name="stepCounter">Reads the training step; required with <paramref name="checkpointInterval"/>.</param>
    /// <param name="checkpointInterval">Minimum number of steps between saves; <see langword="null"/> saves every time.</param>
    /// <param name="initialize">Called by <see cref="RestoreOrInitialize"/> when there is no checkpoint.</param>
    /// <param name="timeProvider">Clock for timestamps; default <see cref="TimeProvider.System"/>.</param>
    /// <exception cref="ArgumentNullException"><paramref name="checkpoint"/> or <paramref name="directory"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxToKeep"/> ≤ 0, or <paramref name="keepCheckpointEvery"/> or <paramref name="checkpointInterval"/> is not positive.</exception>
    /// <exception cref="ArgumentException"><paramref name="checkpointInterval"/> without <paramref name="stepCounter"/>, or an empty name.</exception>
    public CheckpointManager(Checkpoint checkpoint, string directory, int? maxToKeep, TimeSpan? keepCheckpointEvery = null,
        string checkpointName = "ckpt", Func<long>? stepCounter = null, long? checkpointInterval = null, Action? initialize = null,
        TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentException.ThrowIfNullOrEmpty(checkpointName);
        if (maxToKeep is { } max) ArgumentOutOfRangeException.ThrowIfNegativeOrZero(max, nameof(maxToKeep));
        if (keepCheckpointEvery is { } every && every <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(keepCheckpointEvery), every, "Must be positive.");
        if (checkpointInterval is { } interval)
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(interval, nameof(checkpointInterval));
            if (stepCounter is null) throw new ArgumentException("A step counter is required when a checkpoint interval is set.", nameof(stepCounter));
        }
        Checkpoint = checkpoint;
        Directory = directory;
        MaxToKeep = maxToKeep;
        KeepCheckpointEvery = keepCheckpointEvery;
        CheckpointName = checkpointName;
        CheckpointInterval = checkpointInterval;
        _stepCounter = stepCounter;
        _initialize = initialize;
        _time = timeProvider ?? TimeProvider.System;
        _prefixBase = Path.Combine(directory, checkpointName);
        Recover();
    }

    // ---- issue 14: incremental saves (logic in src/Checkpoint.Gpu/Incremental/) ----
    private readonly Incremental.IncrementalHistory _incrementalHistory = new();

    /// <summary>
    /// Opt-in incremental saves: when set, <see cref="Save"/> hard-links data files whose tensors are all unchanged since
    /// this manager's previous checkpoint instead of writing them (see <see cref="IncrementalSaveOptions"/> for the
    /// sharding by change history, the change-tracking contract and the limits). Default <see langword="null"/> (every
    /// save writes everything). Applies to <see cref="Save"/>, <see cref="SaveAsync"/> and multi-worker saves (each worker
    /// links the data files of its own part).
    /// </summary>
    public IncrementalSaveOptions? IncrementalSaves { get; set; }

    /// <summary>What the last incremental save (<see cref="Save"/>, or a <see cref="SaveAsync"/> once published) wrote and reused, or <see langword="null"/> before one.</summary>
    public IncrementalSaveReport? LastIncrementalSave { get; private set; }
    // ---- end issue 14 ----

    /// <summary>The managed checkpoint.</summary>
    public Checkpoint Checkpoint { get; }

    /// <summary>Directory of the checkpoints and the state file.</summary>
    public string Directory { get; }

    /// <summary>Managed checkpoints to keep, or <see langword="null"/> to keep all.</summary>
    public int? MaxToKeep { get; }

    /// <summary>Preserve one checkpoint per this interval (never deleted), or <see langword="null"/>.</summary>
    public TimeSpan? KeepCheckpointEvery { get; }

    /// <summary>Prefix name (default <c>ckpt</c>).</summary>
    public string CheckpointName { get; }

    /// <summary>Minimum steps between saves, or <see langword="null"/>.</summary>
    public long? CheckpointInterval { get; }

    /// <summary>The newest checkpoint prefix recorded (from the state file at construction, or the last save); not checked for existence.</summary>
    public string? LatestCheckpoint { get; private set; }

    /// <summary>Managed checkpoint prefixes, oldest first (preserved ones excluded).</summary>
    public IReadOnlyList<string> Checkpoints => _maybeDelete.Select(e => e.Path).ToArray();

    /// <summary>
    /// TF's <c>tf.train.latest_checkpoint(dir)</c>: the prefix named by <c>&lt;directory&gt;/checkpoint</c>, only if its
    /// <c>.index</c> exists.
    /// </summary>
    /// <param name="directory">Directory holding the state file.</param>
    /// <param name="prefix">The absolute prefix, or <see langword="null"/>.</param>
    /// <returns>True when a valid, existing checkpoint is named.</returns>
    public static bool TryGetLatestCheckpoint(string directory, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? prefix)
    {
        prefix = CheckpointStateFile.LatestCheckpoint(directory);
        return prefix is not null;
    }

    private double Now() => (_time.GetUtcNow() - DateTimeOffset.UnixEpoch).TotalSeconds;

    private void Recover()
    {
        var now = Now();
        if (!CheckpointStateFile.TryRead(Directory, out var state))
        {
            LatestCheckpoint = null;
            // Slightly in the past, so a quickly re-created manager still preserves its first checkpoint.
            _lastPreservedTimestamp = now - 1;
            return;
        }
        LatestCheckpoint = CheckpointStateFile.ResolvePath(Directory, state.ModelCheckpointPath);
        _lastPreservedTimestamp = state.LastPreservedTimestamp ?? 0;
        // The clock went backwards: clamp, so old checkpoints are not deleted by mistake.
        if (now < _lastPreservedTimestamp) _lastPreservedTimestamp = now;
        var paths = state.AllModelCheckpointPaths;
        var stamps = state.AllModelCheckpointTimestamps.Count > 0
            ? state.AllModelCheckpointTimestamps
            : Enumerable.Repeat(_lastPreservedTimestamp, paths.Count).ToArray();
        for (var i = 0; i < Math.Min(paths.Count, stamps.Count); i++)
        {
            var timestamp = Math.Min(stamps[i], now);
            if (timestamp > _lastPreservedTimestamp)
                Upsert(CheckpointStateFile.ResolvePath(Directory, paths[i]), timestamp);
        }
    }

    /// <summary>
    /// Saves a new checkpoint if the interval allows: increments the save counter, writes
    /// <c>&lt;directory&gt;/&lt;name&gt;-&lt;n&gt;</c>, records it, and deletes old ones (see the remarks for the order).
    /// </summary>
    /// <param name="checkpointNumber">The number in the prefix; default the new save-counter value.</param>
    /// <param name="checkInterval">When false, save even if fewer than <see cref="CheckpointInterval"/> steps passed (but not twice at the same step).</param>
    /// <param name="options">Options; frozen by this call.</param>
    /// <returns>The prefix written, or <see langword="null"/> when skipped by the interval.</returns>
    /// <exception cref="IOException">Writing failed; the state file still names only complete checkpoints.</exception>
    /// <exception cref="CheckpointDirectoryLockedException">Another process is saving into <see cref="Directory"/>.</exception>
    /// <exception cref="ObjectDisposedException">The manager is disposed.</exception>
    public string? Save(long? checkpointNumber = null, bool checkInterval = true, CheckpointOptions? options = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (NextPrefix(checkpointNumber, checkInterval) is not { } prefix) return null;
        PrepareDirectory(prefix, options);
        // Issue 14 hook: incremental saves (src/Checkpoint.Gpu/Incremental/).
        if (IncrementalSaves is { } incremental) LastIncrementalSave = Checkpoint.WriteUnnumberedIncremental(prefix, options, incremental, _incrementalHistory);
        else Checkpoint.WriteUnnumbered(prefix, options);
        lock (_bookkeeping)
        {
            if (options?.MultiWorker is { IsChief: false }) Track(prefix);
            else RecordAndSweep(prefix, (options ?? CheckpointOptions.Default).Storage);
        }
        return prefix;
    }

    /// <summary>Non-chief workers of a multi-worker save track the checkpoint but never write the state file or delete files.</summary>
    private void Track(string prefix)
    {
        Upsert(prefix, Now());
        LatestCheckpoint = prefix;
    }

    /// <summary>
    /// Restores <see cref="LatestCheckpoint"/> if there is one (and returns it), otherwise calls the initializer and
    /// returns <see langword="null"/> (TF's <c>restore_or_initialize</c>).
    /// </summary>
    /// <returns>The restored prefix, or <see langword="null"/>.</returns>
    /// <exception cref="FileNotFoundException">The recorded checkpoint's files are missing.</exception>
    public string? RestoreOrInitialize()
    {
        if (LatestCheckpoint is not null)
        {
            Checkpoint.Restore(LatestCheckpoint);
            if (CheckpointInterval is not null) _lastCheckpointStep = _stepCounter!();
            return LatestCheckpoint;
        }
        _initialize?.Invoke();
        return null;
    }

    /// <summary>
    /// Asynchronous <see cref="Save"/>: queues the checkpoint on the IO pipeline and returns its handle, or
    /// <see langword="null"/> when the checkpoint interval says not yet. The state file is written and old checkpoints are
    /// deleted after the new checkpoint is durable, in save order (the record/sweep/record sequence of <see cref="Save"/>).
    /// </summary>
    /// <param name="checkpointNumber">Number for the prefix; <see langword="null"/> uses the incremented save counter.</param>
    /// <param name="checkInterval">When false, saves even if the interval has not passed.</param>
    /// <param name="options">Options; <see cref="CheckpointOptions.Pipeline"/> picks the IO device.</param>
    /// <param name="cancellationToken">Cancels the save.</param>
    /// <returns>The save's handle (<c>Handle.CheckpointPrefix</c> is the checkpoint's prefix; in a multi-worker save
    /// <c>Handle.Prefix</c> is this worker's part and <c>Completion</c> means the chief published the merged checkpoint),
    /// or null when skipped.</returns>
    /// <remarks>Not thread-safe; await each call before the next. The manager's bookkeeping runs on the pipeline's
    /// completion path and is serialized with the synchronous methods by a lock.</remarks>
    /// <exception cref="CheckpointDirectoryLockedException">Another process is saving into <see cref="Directory"/>.</exception>
    /// <exception cref="ObjectDisposedException">The manager is disposed.</exception>
    public ValueTask<Pipeline.SaveHandle?> SaveAsync(long? checkpointNumber = null, bool checkInterval = true, CheckpointOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        cancellationToken.ThrowIfCancellationRequested();
        Checkpoint.ThrowIfQueuingAsyncSave();
        if (NextPrefix(checkpointNumber, checkInterval) is not { } prefix) return ValueTask.FromResult<Pipeline.SaveHandle?>(null);
        PrepareDirectory(prefix, options);
        return Queue(prefix);

        async ValueTask<Pipeline.SaveHandle?> Queue(string prefix) =>
            await Checkpoint.WriteUnnumberedAsync(prefix, options, (path, _) =>
            {
                lock (_bookkeeping)
                {
                    if (options?.MultiWorker is { IsChief: false }) Track(path);
                    else RecordAndSweep(path, (options ?? CheckpointOptions.Default).Storage);
                }
                return ValueTask.CompletedTask;
            }, cancellationToken,
            // Issue 14 hook: incremental asynchronous saves (src/Checkpoint.Gpu/Incremental/IncrementalPipelineSave.cs).
            IncrementalSaves is { } incremental ? new Incremental.IncrementalRequest(incremental, _incrementalHistory, r => LastIncrementalSave = r) : null).ConfigureAwait(false);
    }

    /// <summary>
    /// Before the first save: take the directory lock (not on a multi-worker save's non-chief workers), then remove the
    /// debris of killed saves, keeping the part directory of the save about to start.
    /// </summary>
    private void PrepareDirectory(string prefix, CheckpointOptions? options)
    {
        if (_lock is not null || options?.MultiWorker is { IsChief: false }) return;
        _lock = CheckpointDirectoryLock.Acquire(Directory);
        // Multi-worker: other ranks may already be writing the parts of this or a later save (async saves do not wait
        // for the chief), so no part directory is removed here; each is removed by the chief after its verdict, and a
        // crashed run's one is replaced when that checkpoint number is saved again. Judged as each is found: a part
        // directory another rank creates while the sweep runs is kept too (a snapshot taken first would miss it).
        var removed = options?.MultiWorker is not null
            ? CheckpointDebris.Remove(Directory, keepDirectory: _ => true)
            : CheckpointDebris.Remove(Directory, keep: [Path.GetFullPath(prefix) + "_temp"]);
        if (removed.Count > 0 && Checkpoint.Log is { } log)
            log.WriteLine($"CheckpointManager: removed {removed.Count} leftover temporary file(s) of interrupted saves in {Directory}: {string.Join(", ", removed.Select(Path.GetFileName).Take(5))}{(removed.Count > 5 ? ", …" : "")}");
    }

    // ------------------------------------------------------------------ preemption

    /// <summary>
    /// Arms preemption handling (TF's <c>PreemptionCheckpointHandler</c>): from now on SIGTERM or SIGINT (see
    /// <see cref="PreemptionOptions.Signals"/>) no longer end the process; instead they set <see cref="PreemptionRequested"/>,
    /// cancel <see cref="PreemptionToken"/>, raise <see cref="PreemptionSignalled"/> and start the
    /// <see cref="PreemptionOptions.Deadline"/> clock. The training loop calls <see cref="SaveIfPreemptedAsync"/> (or
    /// <see cref="SaveIfPreempted"/>) at every step boundary; after a signal that call waits for the in-flight asynchronous
    /// saves, writes a final checkpoint of the current step, and exits with <see cref="PreemptionOptions.ExitCode"/> (42).
    /// </summary>
    /// <remarks>
    /// <para><b>Why at a step boundary.</b> The signal arrives on another thread at an arbitrary instant, possibly while an
    /// optimizer is half-way through updating the variables: a checkpoint written from the handler could mix two steps. So
    /// the handler only records the request (as TF's <c>_sigterm_handler_fn</c> sets an event), and the loop saves where
    /// the model is consistent. Queued asynchronous saves are complete snapshots already and finish first (saves run in
    /// order).</para>
    /// <para><b>Deadline.</b> If no final checkpoint is durable within <see cref="PreemptionOptions.Deadline"/> of the signal
    /// (the loop is stuck in a long step, or never calls <see cref="SaveIfPreemptedAsync"/>), a timer writes the latest
    /// durable checkpoint to standard error and exits with <see cref="PreemptionOptions.DeadlineExitCode"/> (43); the state
    /// file then still names the previous complete checkpoint. A second signal while a request is pending is not
    /// intercepted: it ends the process the default way (press Ctrl+C twice to quit at once).</para>
    /// <para>Exit codes: 42 = preempted, final checkpoint durable (restart and resume); 43 = preempted, no final
    /// checkpoint in time (resume from the latest in the state file).</para>
    /// </remarks>
    /// <param name="options">Signals, deadline, exit codes; <see cref="PreemptionOptions.Default"/> when null.</param>
    /// <exception cref="InvalidOperationException">Already armed.</exception>
    /// <exception cref="PlatformNotSupportedException">Signals cannot be registered on this platform.</exception>
    /// <exception cref="ObjectDisposedException">The manager is disposed.</exception>
    public void ArmPreemption(PreemptionOptions? options = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_preemption is not null) throw new InvalidOperationException("Preemption handling is already armed for this manager.");
        _preemption = options ?? PreemptionOptions.Default;
        foreach (var signal in _preemption.Signals.Distinct())
            _signalRegistrations.Add(PosixSignalRegistration.Create(signal, OnSignal));
    }

    /// <summary>True once a preemption signal arrived (after <see cref="ArmPreemption"/>).</summary>
    public bool PreemptionRequested => Volatile.Read(ref _preemptionSignal) != 0;

    /// <summary>The preemption signal received, or null.</summary>
    public PosixSignal? PreemptionSignal => Volatile.Read(ref _preemptionSignal) is var v and not 0 ? (PosixSignal)(v - 1000) : null;

    /// <summary>Cancelled when a preemption signal arrives: pass it to long waits inside a step to reach the boundary sooner.</summary>
    public CancellationToken PreemptionToken => _preemptionCts.Token;

    /// <summary>
    /// Raised on the signal-handling thread when a preemption signal arrives (before <see cref="PreemptionToken"/> is
    /// cancelled). Keep handlers short and thread-safe: record the step, do not touch device memory.
    /// </summary>
    public event Action<PosixSignal>? PreemptionSignalled;

    private void OnSignal(PosixSignalContext context)
    {
        // A second signal while the first is handled: let it terminate the process the default way.
        if (Interlocked.CompareExchange(ref _preemptionSignal, (int)context.Signal + 1000, 0) != 0) return;
        context.Cancel = true;
        try { PreemptionSignalled?.Invoke(context.Signal); }
        catch (Exception ex) { Console.Error.WriteLine($"CheckpointManager: a PreemptionSignalled handler failed: {ex.Message}"); }
        var deadline = _preemption!.Deadline;
        _deadlineTimer = new Timer(_ => OnDeadline(), null, deadline, Timeout.InfiniteTimeSpan);
        Console.Error.WriteLine($"CheckpointManager: received {context.Signal}; the final checkpoint is written at the next step boundary (deadline {deadline.TotalSeconds:0.#} s).");
        try { _preemptionCts.Cancel(); }
        catch (AggregateException ex) { Console.Error.WriteLine($"CheckpointManager: a PreemptionToken callback failed: {ex.InnerException?.Message}"); }
    }

    private void OnDeadline()
    {
        if (Volatile.Read(ref _finalCheckpointDone) != 0) return;
        var options = _preemption!;
        Console.Error.WriteLine($"CheckpointManager: preemption deadline of {options.Deadline.TotalSeconds:0.#} s passed without a final checkpoint; "
            + $"pending saves not written: [{string.Join(", ", Checkpoint.Saver.PendingSaves.Select(h => h.CheckpointPrefix))}]; latest durable checkpoint: "
            + $"{CheckpointStateFile.LatestCheckpoint(Directory) ?? "none"}. Exiting with code {options.DeadlineExitCode}.");
        // The deadline is the budget: do not let the process-exit hook wait for the pending saves beyond it.
        CheckpointPipeline.ProcessExitTimeout = TimeSpan.Zero;
        Environment.Exit(options.DeadlineExitCode);
    }

    /// <summary>
    /// Call at every step boundary of the training loop (TF's <c>save_checkpoint_if_preempted</c>). Without a pending
    /// preemption request it returns <see langword="null"/> at once. After a signal it waits for the in-flight asynchronous
    /// saves, saves a final checkpoint of the current state (ignoring the checkpoint interval; none when this step was just
    /// saved), waits until it is durable (state file written), and then ends the process with
    /// <see cref="PreemptionOptions.ExitCode"/> — or, with <see cref="PreemptionOptions.ExitProcess"/> false, returns its prefix.
    /// </summary>
    /// <param name="options">Save options; <see langword="null"/> for the defaults.</param>
    /// <param name="cancellationToken">Cancels the wait (not the deadline).</param>
    /// <returns><see langword="null"/> when no preemption is pending; otherwise the final checkpoint's prefix (only when not exiting).</returns>
    /// <exception cref="IOException">The final save failed (with <see cref="PreemptionOptions.ExitProcess"/> true the process
    /// exits with <see cref="PreemptionOptions.DeadlineExitCode"/> instead).</exception>
    public async ValueTask<string?> SaveIfPreemptedAsync(CheckpointOptions? options = null, CancellationToken cancellationToken = default)
    {
        if (!PreemptionRequested) return null;
        var preemption = _preemption!;
        string? final;
        try
        {
            var handle = await SaveAsync(checkInterval: false, options: options, cancellationToken: cancellationToken).ConfigureAwait(false);
            if (handle is not null)
            {
                // Saves run in order: the final one durable means every earlier one has finished (a failed earlier save
                // does not matter any more: the final checkpoint supersedes it).
                await handle.Completion.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            else
            {
                // This step was saved already (interval bookkeeping): its save, still in flight, is the final checkpoint.
                foreach (var pending in Checkpoint.Saver.PendingSaves) await pending.Completion.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            final = handle?.CheckpointPrefix ?? LatestCheckpoint;
        }
        catch (Exception ex) when (preemption.ExitProcess && ex is not OperationCanceledException)
        {
            Console.Error.WriteLine($"CheckpointManager: the final checkpoint after {PreemptionSignal} was NOT written: {ex.Message}. Latest durable checkpoint: "
                + $"{CheckpointStateFile.LatestCheckpoint(Directory) ?? "none"}. Exiting with code {preemption.DeadlineExitCode}.");
            Exit(preemption.DeadlineExitCode);
            throw;
        }
        return Finish(final, preemption);
    }

    /// <summary>Synchronous <see cref="SaveIfPreemptedAsync"/> (uses <see cref="Save"/>).</summary>
    /// <param name="options">Save options.</param>
    /// <returns><see langword="null"/> when no preemption is pending; otherwise the final checkpoint's prefix (only when not exiting).</returns>
    /// <exception cref="IOException">The final save failed (with <see cref="PreemptionOptions.ExitProcess"/> true the process
    /// exits with <see cref="PreemptionOptions.DeadlineExitCode"/> instead).</exception>
    public string? SaveIfPreempted(CheckpointOptions? options = null)
    {
        if (!PreemptionRequested) return null;
        var preemption = _preemption!;
        string? final;
        try
        {
            final = Save(checkInterval: false, options: options) ?? LatestCheckpoint;
        }
        catch (Exception ex) when (preemption.ExitProcess)
        {
            Console.Error.WriteLine($"CheckpointManager: the final checkpoint after {PreemptionSignal} was NOT written: {ex.Message}. Exiting with code {preemption.DeadlineExitCode}.");
            Exit(preemption.DeadlineExitCode);
            throw;
        }
        return Finish(final, preemption);
    }

    private string? Finish(string? final, PreemptionOptions preemption)
    {
        Volatile.Write(ref _finalCheckpointDone, 1);
        _deadlineTimer?.Dispose();
        if (!preemption.ExitProcess) return final;
        Console.Error.WriteLine($"CheckpointManager: final checkpoint {final ?? "(none)"} is durable after {PreemptionSignal}; exiting with code {preemption.ExitCode}.");
        Exit(preemption.ExitCode);
        return final;
    }

    private void Exit(int code)
    {
        Volatile.Write(ref _finalCheckpointDone, 1);
        _deadlineTimer?.Dispose();
        Console.Out.Flush();
        Console.Error.Flush();
        Environment.Exit(code);
    }

    /// <summary>Releases the directory lock and the signal registrations (saves already queued are not affected).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var registration in _signalRegistrations) registration.Dispose();
        _signalRegistrations.Clear();
        _deadlineTimer?.Dispose();
        _lock?.Dispose();
        _lock = null;
        _preemptionCts.Dispose();
    }

    /// <summary>Applies the checkpoint interval, increments the save counter and returns the next prefix, or null to skip.</summary>
    private string? NextPrefix(long? checkpointNumber, bool checkInterval)
    {
        if (CheckpointInterval is { } interval)
        {
            var step = _stepCounter!();
            if (_lastCheckpointStep is { } last)
            {
                if (step == last) return null;
                if (checkInterval && step < last + interval) return null;
            }
            _lastCheckpointStep = step;
        }
        var counter = Checkpoint.IncrementSaveCounter();
        var number = checkpointNumber ?? counter;
        return $"{_prefixBase}-{number.ToString(CultureInfo.InvariantCulture)}";
    }

    private void RecordAndSweep(string savePath, IShardStorage storage)
    {
        // An overwritten checkpoint moves to the newest position.
        Upsert(savePath, Now());
        LatestCheckpoint = savePath;
        // Record first: a crash while deleting still leaves the new checkpoint in the state file.
        RecordState(storage);
        Sweep(storage);
        RecordState(storage);
    }

    private void Upsert(string path, double timestamp)
    {
        _maybeDelete.RemoveAll(e => string.Equals(e.Path, path, StringComparison.Ordinal));
        _maybeDelete.Add((path, timestamp));
    }

    private void RecordState(IShardStorage storage)
    {
        var state = new CheckpointState(LatestCheckpoint!, _maybeDelete.Select(e => Relative(e.Path)).ToArray(),
            _maybeDelete.Select(e => e.Timestamp).ToArray(), _lastPreservedTimestamp);
        BundleCommit.PublishState(Directory, state with { ModelCheckpointPath = Relative(LatestCheckpoint!) }, storage);
    }

    private string Relative(string path) => Path.GetRelativePath(Path.GetFullPath(Directory), Path.GetFullPath(path));

    private void Sweep(IShardStorage storage)
    {
        if (MaxToKeep is not { } max) return;   // keep everything; last-preserved time unchanged
        while (_maybeDelete.Count > max)
        {
            var (path, timestamp) = _maybeDelete[0];
            _maybeDelete.RemoveAt(0);
            if (KeepCheckpointEvery is { } every && timestamp - every.TotalSeconds >= _lastPreservedTimestamp)
            {
                // Preserved forever, and no longer referenced (keeps the state file bounded).
                _lastPreservedTimestamp = timestamp;
                continue;
            }
            // Prune through the one protocol (index first, data files, directory fsync). A failed delete propagates, as TF's
            // file_io.delete_file does; the state file written before the sweep still names a complete set.
            BundleCommit.DeleteCheckpoint(path, storage);
        }
    }

}

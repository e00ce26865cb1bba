using System.Diagnostics;
using System.Threading.Channels;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline.Staging;

namespace CheckpointGpu.Pipeline.Saving;

/// <summary>
/// One save executing on a <see cref="CheckpointPipeline"/>: copy engine → checksum stage → writers → commit,
/// joined by bounded channels. Split by job: this file (state, run/complete/fail), <c>.Barriers</c>, <c>.Stages</c>,
/// <c>.Commit</c>. Never throws from <see cref="RunAsync"/>: the outcome goes to the handle.
/// </summary>
/// <remarks>
/// Failure model (STYLE B3): the first failure cancels the linked token; every stage stops; then the operation
/// waits for all device copies on the pipeline stream and for every stage task (so no DMA or write still
/// touches a slot), deletes the temporary files, resets the ring, and faults the handle with the first failure
/// followed by the later ones (<see cref="Task.Exception"/> lists them all).
/// </remarks>
internal sealed partial class SaveOperation
{
    private readonly CheckpointPipeline _pipeline;
    private readonly CheckpointPipelineOptions _options;
    private readonly Func<string, CancellationToken, ValueTask>? _onCommitted;
    private readonly Action<Exception>? _onFailed;
    private readonly bool _writesFiles;
    private readonly CancellationToken _userToken;
    private readonly TaskCompletionSource _snapshotted = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource[] _staged;
    private readonly uint[] _crc;
    // Raw CRC-32C of each (tensor, chunk) piece, filled by writers in parallel and combined in file order at the end.
    private readonly List<(long FileOrder, uint Crc, int Length)>[] _pieceCrcs;
    private readonly Lock _sync = new();
    private readonly List<Exception> _failures = [];
    // Copy-on-write clones of device sources (WriteBarriers): the copy engine reads _redirect[t] when set.
    private readonly DeviceView?[] _redirect;
    private readonly DeviceBuffer?[] _clones;
    private readonly Task?[] _cloneTaken;
    private readonly Dictionary<DeviceBuffer, List<int>> _byBuffer = new(ReferenceEqualityComparer.Instance);
    private int _stagedRemaining;
    private CancellationTokenSource? _cts;
    private IReadOnlyList<BundleEntry>? _entries;

    /// <summary>Creates the operation (see <see cref="CheckpointPipeline.EnqueueCommitOnly"/> for <paramref name="writesFiles"/> false).</summary>
    /// <param name="pipeline">The owning pipeline.</param>
    /// <param name="options">This save's IO settings (the ring is made to match them when the save starts).</param>
    /// <param name="prefix">Checkpoint prefix.</param>
    /// <param name="plan">What to write where.</param>
    /// <param name="onCommitted">Runs after the commit point, in queue order.</param>
    /// <param name="onFailed">Runs once on failure, before the handle faults.</param>
    /// <param name="writesFiles">False for a commit-only step: no files, <paramref name="onCommitted"/> runs in queue order.</param>
    /// <param name="cancellationToken">The caller's token.</param>
    public SaveOperation(CheckpointPipeline pipeline, CheckpointPipelineOptions options, string prefix, SavePlan plan, Func<string, CancellationToken, ValueTask>? onCommitted,
        Action<Exception>? onFailed, bool writesFiles, CancellationToken cancellationToken)
    {
        _pipeline = pipeline;
        _options = options;
        Prefix = prefix;
        Plan = plan;
        _onCommitted = onCommitted;
        _onFailed = onFailed;
        _writesFiles = writesFiles;
        _userToken = cancellationToken;
        var n = plan.Tensors.Count;
        _staged = new TaskCompletionSource[n];
        _crc = new uint[n];
        _pieceCrcs = new List<(long, uint, int)>[n];
        for (var i = 0; i < n; i++) _pieceCrcs[i] = [];
        _redirect = new DeviceView?[n];
        _clones = new DeviceBuffer?[n];
        _cloneTaken = new Task?[n];
        for (var i = 0; i < n; i++)
        {
            _staged[i] = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var t = plan.Tensors[i];
            if (t.Item.Source.Kind == SaveSourceKind.Device)
            {
                var buffer = t.Item.Source.Device.Buffer!;
                // Any accelerator: its own copy engine (stream) feeds the same ring slots and writers.
                if (!Accelerators.Contains(buffer.Accelerator)) Accelerators.Add(buffer.Accelerator);
                if (!_byBuffer.TryGetValue(buffer, out var list)) _byBuffer[buffer] = list = [];
                list.Add(i);
            }
        }
        _stagedRemaining = n;
        // Zero-size tensors have no bytes to stage; their CRC is that of the empty string.
        for (var i = 0; i < n; i++)
        {
            var t = plan.Tensors[i];
            if (t.Item.Source.Kind == SaveSourceKind.Encoded) _crc[i] = t.Item.Source.MaskedCrc32C;
            else if (t.Size == 0) _crc[i] = MaskedCrc32C.Mask(0);
            if (t.Size == 0) MarkStaged(i);
        }
        if (n == 0) _snapshotted.TrySetResult();
        Handle = new SaveHandle(this);
    }

    public string Prefix { get; }

    /// <summary>The checkpoint this save belongs to (see <see cref="SaveHandle.CheckpointPrefix"/>).</summary>
    public string? CheckpointPrefix { get; init; }

    public SavePlan Plan { get; }

    public SaveHandle Handle { get; }

    /// <summary>The pipeline's use lease on its accelerator while this save is queued or running (set and released by the pipeline).</summary>
    public IDisposable? AcceleratorLease { get; set; }

    /// <summary>
    /// Set by the pipeline: releases the operation's accelerator leases and queue entry. Run once, right before the handle
    /// completes (success, failure or cancellation), so whoever awaits the handle may dispose the accelerators at once.
    /// </summary>
    public Action? Retiring;

    /// <summary>1 once the pipeline retired the operation (see <see cref="Retiring"/>).</summary>
    public int RetiredFlag;

    private void RetireBeforeCompleting() => Interlocked.Exchange(ref Retiring, null)?.Invoke();

    /// <summary>Every accelerator whose buffers this save reads (one copy engine each).</summary>
    public List<Accelerator> Accelerators { get; } = [];

    /// <summary>Use leases on <see cref="Accelerators"/> other than the pipeline's (set and released by the pipeline).</summary>
    public List<IDisposable> ForeignLeases { get; } = [];

    public Task Snapshotted => _snapshotted.Task;

    public Task Completion => _completion.Task;

    public IReadOnlyList<BundleEntry>? Entries => Volatile.Read(ref _entries);

    public bool IsStaged(int index) => _staged[index].Task.IsCompleted;

    public bool References(DeviceBuffer buffer) => _byBuffer.ContainsKey(buffer);

    // ------------------------------------------------------------------ execution

    /// <summary>
    /// The ring phase, run while the save holds the ring: stream, then commit (up to the directory fsync). Never throws.
    /// Returns true when the checkpoint is committed and <see cref="CompleteAsync"/> must run; false when the save failed
    /// (temporaries removed, handle faulted).
    /// </summary>
    public async Task<bool> RunAsync()
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(_userToken);
        _cts = cts;
        var ct = cts.Token;
        var files = new IShardFile?[Plan.ShardCount];
        BundleCommit? commit = null;
        _stopwatch.Restart();
        try
        {
            ct.ThrowIfCancellationRequested();
            if (!_writesFiles)
            {
                // Commit-only step: nothing to stage or write; the callback runs in queue order like a save's.
                Volatile.Write(ref _entries, Array.Empty<BundleEntry>());
                return true;
            }
            // IO settings apply per save: the ring takes this save's shape (the pipeline holds the ring lock for us).
            _pipeline.EnsureRing(_options);
            // A restore's kept scratch is for the next restore; once the pipeline saves, its owner is training: hand it back.
            _pipeline.FreeRetainedScratch();
            // ---- the one commit protocol (Format's BundleCommit), step 1: data under temporary names ----
            commit = new BundleCommit(Prefix, Plan.ShardCount, _options.Storage);
            var creating = commit;
            // open(2) with O_CREAT (and the directory's creation) block: on the engine's IO threads, like every file-system call.
            await CheckpointPipeline.IOThreads.Run(() =>
            {
                for (var s = 0; s < Plan.ShardCount; s++) files[s] = creating.CreateDataFile(s, _options.UseDirectIO);
            }, ct).ConfigureAwait(false);

            await StreamAsync(files, ct).ConfigureAwait(false);
            ThrowIfFailed();
            // Every byte is staged and written, so every device read has completed: a tensor whose staged signal is still
            // queued behind its last copy's completion (SignalStaged's continuation) is marked here, so Snapshotted never
            // completes after the handle (nor, were ReleaseBarriers to win that race, never at all).
            for (var i = 0; i < _staged.Length; i++) MarkStaged(i);
            SnapshotDuration = _stopwatch.Elapsed;
            await CommitAsync(commit, files, ct).ConfigureAwait(false);
            Volatile.Write(ref _entries, _committedEntries);
            return true;
        }
        catch (Exception ex)
        {
            AddFailure(ex);
            // Before the commit point this deletes every temporary and renamed file; after it, nothing. The deletes block:
            // they run on the engine's IO threads and are awaited; a failure of the cleanup itself is reported with the others.
            var failed = commit;
            try
            {
                await CheckpointPipeline.IOThreads.Run(() =>
                {
                    foreach (var f in files) DisposeQuietly(f);
                    failed?.Dispose();
                }, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception cleanup)
            {
                AddFailure(cleanup);
            }
            Fail();
            return false;
        }
        finally
        {
            _cts = null;
            ReleaseBarriers();
        }
    }

    /// <summary>
    /// The completion phase, run off the ring (the next save may already stream) but in save order: the
    /// <c>onCommitted</c> callback (a multi-worker merge, the state file, pruning), then the handle completes. Never throws.
    /// </summary>
    public async Task CompleteAsync()
    {
        try
        {
            _userToken.ThrowIfCancellationRequested();
            if (_onCommitted is not null) await _onCommitted(Prefix, _userToken).ConfigureAwait(false);
            TotalDuration = _stopwatch.Elapsed;
            RetireBeforeCompleting();
            _completion.TrySetResult();
        }
        catch (Exception ex)
        {
            AddFailure(ex);
            Fail();
        }
    }

    /// <summary>Reports the failures: the failure callback first, then the handle faults (or is cancelled).</summary>
    private void Fail()
    {
        Exception[] failures;
        lock (_sync) failures = [.. _failures];
        // Staging has stopped and every device read has drained: buffers are free to mutate.
        ReleaseBarriers();
        // The failure callback runs before the handle faults, so what it reports is out before anyone observes the failure.
        if (_onFailed is not null)
        {
            try { _onFailed(failures[0]); }
            catch (Exception callbackFailure) { failures = [.. failures, callbackFailure]; }
        }
        RetireBeforeCompleting();
        if (failures.Length == 1 && failures[0] is OperationCanceledException oce)
        {
            _snapshotted.TrySetCanceled(oce.CancellationToken);
            _completion.TrySetCanceled(oce.CancellationToken);
        }
        else
        {
            _snapshotted.TrySetException(failures);
            _completion.TrySetException(failures);
        }
    }

    private readonly Stopwatch _stopwatch = new();

    private IReadOnlyList<BundleEntry>? _committedEntries;

    /// <summary>Elapsed time from start until every byte was staged and written, before the commit.</summary>
    public TimeSpan SnapshotDuration { get; private set; }

    /// <summary>Elapsed time from start to durable commit.</summary>
    public TimeSpan TotalDuration { get; private set; }

    private void AddFailure(Exception ex)
    {
        lock (_sync)
        {
            // Cancellations caused by our own first failure are consequences, not failures.
            if (ex is OperationCanceledException && _failures.Count > 0) return;
            if (_failures.Any(f => ReferenceEquals(f, ex))) return;
            if (_failures.Count > 0 && _failures[0] is OperationCanceledException && ex is not OperationCanceledException && !_userToken.IsCancellationRequested)
                _failures.Insert(0, ex);
            else
                _failures.Add(ex);
        }
        try { _cts?.Cancel(); }
        catch (ObjectDisposedException) { }
    }

    private void ThrowIfFailed()
    {
        lock (_sync)
        {
            if (_failures.Count > 0) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(_failures[0]);
        }
    }

    internal static long AlignUp(long n) => (n + IShardFile.DirectIOAlignmentInBytes - 1) & ~(long)(IShardFile.DirectIOAlignmentInBytes - 1);

    private static void DisposeQuietly(IShardFile? f)
    {
        try { f?.Dispose(); }
        catch (IOException) { }
    }

}

using System.Diagnostics;
using System.Threading.Channels;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline.Staging;

namespace CheckpointGpu.Pipeline.Saving;

/// <summary>
/// One save executing on a <see cref="CheckpointPipeline"/>: copy engine → checksum stage → writers → commit,
/// joined by bounded channels. Never throws from <see cref="RunAsync"/>: the outcome goes to the handle.
/// </summary>
/// <remarks>
/// Failure model (STYLE B3): the first failure cancels the linked token; every stage stops; then the operation
/// waits for all device copies on the pipeline stream and for every stage task (so no DMA or write still
/// touches a slot), deletes the temporary files, resets the ring, and faults the handle with the first failure
/// followed by the later ones (<see cref="Task.Exception"/> lists them all).
/// </remarks>
internal sealed class SaveOperation
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
    /// <param name="prefix">Checkpoint prefix.</param>
    /// <param name="plan">What to write where.</param>
    /// <param name="onCommitted">Runs after the commit point, in queue order.</param>
    /// <param name="onFailed">Runs once on failure, before the handle faults.</param>
    /// <param name="writesFiles">False for a commit-only step: no files, <paramref name="onCommitted"/> runs in queue order.</param>
    /// <param name="cancellationToken">The caller's token.</param>
    public SaveOperation(CheckpointPipeline pipeline, string prefix, SavePlan plan, Func<string, CancellationToken, ValueTask>? onCommitted,
        Action<Exception>? onFailed, bool writesFiles, CancellationToken cancellationToken)
    {
        _pipeline = pipeline;
        _options = pipeline.Options;
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
                if (!ReferenceEquals(buffer.Accelerator, pipeline.Accelerator))
                    throw new ArgumentException($"'{t.EntryKey}': the device source belongs to {buffer.Accelerator}, not to the pipeline's accelerator {pipeline.Accelerator}.", nameof(plan));
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

    public Task Snapshotted => _snapshotted.Task;

    public Task Completion => _completion.Task;

    public IReadOnlyList<BundleEntry>? Entries => Volatile.Read(ref _entries);

    public bool IsStaged(int index) => _staged[index].Task.IsCompleted;

    public bool References(DeviceBuffer buffer) => _byBuffer.ContainsKey(buffer);

    // ------------------------------------------------------------------ barriers

    /// <summary>Completes when the tensor's bytes no longer need to be read from its device source.</summary>
    public ValueTask WaitUntilStagedAsync(int index, CancellationToken cancellationToken)
    {
        if (_staged[index].Task.IsCompleted) return ValueTask.CompletedTask;
        if (cancellationToken.IsCancellationRequested) return ValueTask.FromCanceled(cancellationToken);
        var clone = TryCopyOnWrite(index);
        return new ValueTask((clone ?? _staged[index].Task).WaitAsync(cancellationToken));
    }

    public ValueTask WaitUntilStagedAsync(DeviceBuffer buffer, CancellationToken cancellationToken)
    {
        if (!_byBuffer.TryGetValue(buffer, out var indices)) return ValueTask.CompletedTask;
        List<Task>? pending = null;
        foreach (var i in indices)
        {
            var vt = WaitUntilStagedAsync(i, cancellationToken);
            if (!vt.IsCompletedSuccessfully) (pending ??= []).Add(vt.AsTask());
        }
        return pending is null ? ValueTask.CompletedTask : new ValueTask(Task.WhenAll(pending));
    }

    /// <summary>
    /// Under <see cref="SnapshotPolicy.WriteBarriers"/>, clones an unstaged device source on the device and
    /// redirects the copy engine to the clone; returns the task of the clone copy, or null to wait for staging.
    /// Ordering: the clone is enqueued on the pipeline stream under the same lock the copy engine holds while
    /// enqueuing device→ring copies, so every earlier read of the original precedes it on the (in-order) stream
    /// and every later read uses the clone.
    /// </summary>
    private Task? TryCopyOnWrite(int index)
    {
        if (_options.SnapshotPolicy != SnapshotPolicy.WriteBarriers) return null;
        var source = Plan.Tensors[index].Item.Source;
        if (source.Kind != SaveSourceKind.Device) return null;
        lock (_sync)
        {
            if (_cloneTaken[index] is { } existing) return existing;
            if (_staged[index].Task.IsCompleted || _failures.Count > 0) return null;
            var size = source.LengthInBytes;
            if (!_pipeline.TryReserveCopyOnWrite(size)) return null;
            DeviceBuffer clone;
            try
            {
                clone = _pipeline.Accelerator.Allocate(size);
            }
            catch (AcceleratorException)
            {
                _pipeline.ReleaseCopyOnWrite(size);
                return null;
            }
            var copied = _pipeline.CopyStream.EnqueueCopy(source.Device, clone.AsView());
            _clones[index] = clone;
            _redirect[index] = clone.AsView();
            _cloneTaken[index] = copied.Completion;
            return copied.Completion;
        }
    }

    // ------------------------------------------------------------------ execution

    /// <summary>Runs the save to completion (or failure); completes the handle. Never throws.</summary>
    public async Task RunAsync()
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(_userToken);
        _cts = cts;
        var ct = cts.Token;
        var files = new IShardFile?[Plan.ShardCount];
        var tempPaths = new string[Plan.ShardCount];
        var finalPaths = new string[Plan.ShardCount];
        var renamed = new List<string>();
        string? indexTemp = null;
        var committed = false;
        var storage = _options.Storage;
        var stopwatch = Stopwatch.StartNew();
        try
        {
            ct.ThrowIfCancellationRequested();
            if (!_writesFiles)
            {
                // Commit-only step: nothing to stage or write; the callback runs in queue order like a save's.
                committed = true;
                Volatile.Write(ref _entries, Array.Empty<BundleEntry>());
                if (_onCommitted is not null) await _onCommitted(Prefix, _userToken).ConfigureAwait(false);
                TotalDuration = stopwatch.Elapsed;
                _completion.TrySetResult();
                return;
            }
            var dir = Path.GetDirectoryName(Path.GetFullPath(Prefix))!;
            Directory.CreateDirectory(dir);
            for (var s = 0; s < Plan.ShardCount; s++)
            {
                finalPaths[s] = BundleNaming.DataFile(Prefix, s, Plan.ShardCount);
                tempPaths[s] = TempName(finalPaths[s]);
                files[s] = storage.CreateForWrite(tempPaths[s], _options.UseDirectIO);
            }

            await StreamAsync(files, ct).ConfigureAwait(false);
            ThrowIfFailed();
            SnapshotDuration = stopwatch.Elapsed;

            // ---- commit protocol (documented on CheckpointPipeline) ----
            // Data files are truncated and flushed (one blocking fsync per shard, in parallel) while the index,
            // which needs only the plan and the checksums, is written and flushed; renames wait for both.
            var flushes = new Task[files.Length];
            for (var s = 0; s < files.Length; s++)
            {
                var f = files[s]!;
                var size = Plan.ShardSizes[s];
                flushes[s] = Task.Run(() =>
                {
                    if (f.IsDirect && size % IShardFile.DirectIOAlignmentInBytes != 0) f.SetLength(size);
                    f.FlushToDisk();
                }, CancellationToken.None);
            }
            var entries = Plan.ToEntries(_options.ComputeChecksums ? _crc : new uint[_crc.Length]);
            var indexPath = BundleNaming.IndexFile(Prefix);
            indexTemp = TempName(indexPath);
            try
            {
                await WriteIndexAsync(storage, indexTemp, entries, ct).ConfigureAwait(false);
            }
            finally
            {
                try { await Task.WhenAll(flushes).ConfigureAwait(false); }
                catch (Exception ex) { AddFailure(ex); }
            }
            ThrowIfFailed();
            for (var s = 0; s < files.Length; s++)
            {
                files[s]!.Dispose();
                files[s] = null;
            }
            ct.ThrowIfCancellationRequested();
            // An older bundle under the same prefix must not pair its index with our data files mid-way.
            if (storage.Exists(indexPath)) storage.Delete(indexPath);
            for (var s = 0; s < files.Length; s++)
            {
                storage.Move(tempPaths[s], finalPaths[s]);
                renamed.Add(finalPaths[s]);
            }
            storage.Move(indexTemp, indexPath); // the commit point
            committed = true;
            storage.FlushDirectory(dir);
            Volatile.Write(ref _entries, entries);
            if (_onCommitted is not null) await _onCommitted(Prefix, _userToken).ConfigureAwait(false);
            TotalDuration = stopwatch.Elapsed;
            _completion.TrySetResult();
        }
        catch (Exception ex)
        {
            AddFailure(ex);
            foreach (var f in files) DisposeQuietly(f);
            if (!committed)
            {
                foreach (var p in tempPaths) DeleteQuietly(storage, p);
                foreach (var p in renamed) DeleteQuietly(storage, p);
                if (indexTemp is not null) DeleteQuietly(storage, indexTemp);
            }
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
        finally
        {
            _cts = null;
            ReleaseBarriers();
        }
    }

    /// <summary>Elapsed time from start until every byte was staged and written, before the commit.</summary>
    public TimeSpan SnapshotDuration { get; private set; }

    /// <summary>Elapsed time from start to durable commit.</summary>
    public TimeSpan TotalDuration { get; private set; }

    private async Task StreamAsync(IShardFile?[] files, CancellationToken ct)
    {
        var fullSnapshot = _options.SnapshotPolicy == SnapshotPolicy.FullHostSnapshot;
        var ring = _pipeline.Ring;
        PinnedHostBuffer? arena = null;
        long[]? arenaBase = null;
        if (fullSnapshot)
        {
            arenaBase = new long[Plan.ShardCount];
            long total = 0;
            for (var s = 0; s < Plan.ShardCount; s++)
            {
                arenaBase[s] = total;
                total += AlignUp(Plan.ShardSizes[s]);
            }
            arena = _pipeline.Arena.Ensure(total);
        }
        // Bounds: the ring itself bounds the bytes in flight; the channel holds at most one ring of jobs. With the
        // full snapshot the arena is the bound (one window per chunk), so the copy engine never waits for writers.
        var capacity = fullSnapshot ? (int)Math.Max(1, Plan.ShardSizes.Sum(s => (s + ring.SlotSizeInBytes - 1) / ring.SlotSizeInBytes)) : ring.SlotCount;
        var toWriters = Channel.CreateBounded<StagedChunk>(new BoundedChannelOptions(capacity)
        { FullMode = BoundedChannelFullMode.Wait, SingleReader = false, SingleWriter = true });

        var stages = new List<Task> { Guard(CopyEngineAsync(toWriters.Writer, ring, arena, arenaBase, files, ct)) };
        for (var w = 0; w < _options.WriterCount; w++) stages.Add(Guard(WriterAsync(toWriters.Reader, files, fullSnapshot ? null : ring, w, ct)));
        await Task.WhenAll(stages).ConfigureAwait(false);
        if (_options.ComputeChecksums) CombineChecksums();

        // Whatever happened, no device copy may still target a slot or the arena when we return (STYLE B4).
        try
        {
            await _pipeline.CopyStream.Record().Completion.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is AcceleratorException or OperationCanceledException or ObjectDisposedException)
        {
            AddFailure(ex);
        }
        if (!fullSnapshot) ring.ResetAll();
    }

    private async Task Guard(Task stage)
    {
        try
        {
            await stage.ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            AddFailure(ex);
        }
    }

    private async Task CopyEngineAsync(ChannelWriter<StagedChunk> output, StagingRing ring, PinnedHostBuffer? arena, long[]? arenaBase,
        IShardFile?[] files, CancellationToken ct)
    {
        var stream = _pipeline.CopyStream;
        try
        {
            foreach (var chunk in SaveChunk.Enumerate(Plan, ring.SlotSizeInBytes))
            {
                StagingSlot slot;
                if (arena is not null)
                {
                    slot = new StagingSlot(arena, arenaBase![chunk.Shard] + chunk.FileOffset, (int)AlignUp(chunk.LengthInBytes), -1);
                    slot.Transition(SlotState.Filling);
                }
                else
                {
                    slot = await ring.RentAsync(ct).ConfigureAwait(false);
                }
                DeviceEvent? last = null;
                var copyStart = _options.SaveTrace is null ? 0 : Stopwatch.GetTimestamp();
                try
                {
                    foreach (var piece in chunk.Pieces)
                    {
                        var source = Plan.Tensors[piece.Tensor].Item.Source;
                        if (source.Kind == SaveSourceKind.Device)
                        {
                            lock (_sync)
                            {
                                var view = _redirect[piece.Tensor] ?? source.Device;
                                last = stream.EnqueueCopyToHost(view.SubView(piece.OffsetInTensor, piece.LengthInBytes), slot.Buffer,
                                    slot.BaseOffset + piece.OffsetInSlot);
                            }
                        }
                        else
                        {
                            source.Host.Span.Slice((int)piece.OffsetInTensor, piece.LengthInBytes)
                                .CopyTo(slot.GetSpan(piece.OffsetInSlot, piece.LengthInBytes));
                        }
                    }
                    // Staged signals come from the copies themselves (not the writers), so barriers and Snapshotted do
                    // not wait for the disk once a tensor's bytes are in host memory (the arena, or a ring slot).
                    SignalStaged(chunk, last);
                    // O_DIRECT writes whole 4 KiB blocks: zero the padding of a shard's unaligned tail (truncated at commit).
                    var padded = (int)AlignUp(chunk.LengthInBytes);
                    if (files[chunk.Shard]!.IsDirect && padded > chunk.LengthInBytes)
                        slot.GetSpan(chunk.LengthInBytes, padded - chunk.LengthInBytes).Clear();
                }
                catch
                {
                    // The slot is not handed over; the drain in StreamAsync waits for its copies before ResetAll.
                    throw;
                }
                await output.WriteAsync(new StagedChunk(chunk, slot, last, copyStart), ct).ConfigureAwait(false);
            }
        }
        finally
        {
            output.TryComplete();
        }
    }

    /// <summary>
    /// A writer: waits for the slot's device copies, checksums its pieces (in parallel with the other writers),
    /// signals tensors whose last byte just arrived, writes the slot at its file offset, returns the slot.
    /// </summary>
    private async Task WriterAsync(ChannelReader<StagedChunk> input, IShardFile?[] files, StagingRing? ring, int writer, CancellationToken ct)
    {
        var computeCrc = _options.ComputeChecksums;
        var trace = _options.SaveTrace;
        await foreach (var job in input.ReadAllAsync(ct).ConfigureAwait(false))
        {
            if (job.LastCopy is { } ev && !ev.IsCompleted) await ev.Completion.WaitAsync(ct).ConfigureAwait(false);
            else if (job.LastCopy?.Error is { } error) throw error;
            long t0 = 0;
            if (trace is not null)
            {
                t0 = Stopwatch.GetTimestamp();
                trace(new SaveTraceEvent(SaveTraceStage.DeviceCopy, job.Slot.Index, -1, job.Chunk.Shard, job.Chunk.FileOffset, job.Chunk.LengthInBytes, job.CopyStart, t0));
            }
            foreach (var piece in job.Chunk.Pieces)
            {
                var t = Plan.Tensors[piece.Tensor];
                if (computeCrc && t.Item.Source.Kind != SaveSourceKind.Encoded)
                {
                    var crc = MaskedCrc32C.Compute(job.Slot.GetSpan(piece.OffsetInSlot, piece.LengthInBytes));
                    var list = _pieceCrcs[piece.Tensor];
                    lock (list) list.Add((piece.OffsetInTensor, crc, piece.LengthInBytes));
                }
            }
            if (trace is not null)
            {
                var t1 = Stopwatch.GetTimestamp();
                if (computeCrc) trace(new SaveTraceEvent(SaveTraceStage.Checksum, job.Slot.Index, writer, job.Chunk.Shard, job.Chunk.FileOffset, job.Chunk.LengthInBytes, t0, t1));
                t0 = t1;
            }
            job.Slot.Transition(SlotState.Writing);
            var file = files[job.Chunk.Shard]!;
            var length = file.IsDirect ? (int)AlignUp(job.Chunk.LengthInBytes) : job.Chunk.LengthInBytes;
            await file.WriteAsync(job.Slot.GetMemory(0, length), job.Chunk.FileOffset, ct).ConfigureAwait(false);
            trace?.Invoke(new SaveTraceEvent(SaveTraceStage.Write, job.Slot.Index, writer, job.Chunk.Shard, job.Chunk.FileOffset, job.Chunk.LengthInBytes, t0, Stopwatch.GetTimestamp()));
            // Both the device copy and the write are done: the slot may be reused (STYLE B4).
            if (ring is not null) ring.Return(job.Slot);
            else job.Slot.Transition(SlotState.Free);
        }
    }

    /// <summary>Marks the tensors whose last byte is in <paramref name="chunk"/> staged once <paramref name="lastCopy"/> completes
    /// (the stream is in order, so every earlier piece's copy has completed too).</summary>
    private void SignalStaged(SaveChunk chunk, DeviceEvent? lastCopy)
    {
        List<int>? ended = null;
        foreach (var piece in chunk.Pieces)
            if (piece.OffsetInTensor + piece.LengthInBytes == Plan.Tensors[piece.Tensor].Size) (ended ??= []).Add(piece.Tensor);
        if (ended is null) return;
        if (lastCopy is null || lastCopy.IsCompletedSuccessfully)
        {
            foreach (var t in ended) MarkStaged(t);
            return;
        }
        _ = lastCopy.Completion.ContinueWith(static (task, state) =>
        {
            var (op, tensors) = ((SaveOperation, List<int>))state!;
            // A failed copy fails the save; ReleaseBarriers unblocks waiters after the drain.
            if (task.IsCompletedSuccessfully) foreach (var t in tensors) op.MarkStaged(t);
        }, (this, ended), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>Combines each tensor's piece CRCs in file order into its masked entry CRC.</summary>
    private void CombineChecksums()
    {
        for (var i = 0; i < _crc.Length; i++)
        {
            var t = Plan.Tensors[i];
            if (t.Item.Source.Kind == SaveSourceKind.Encoded || t.Size == 0) continue;
            var pieces = _pieceCrcs[i];
            pieces.Sort((a, b) => a.FileOrder.CompareTo(b.FileOrder));
            var crc = 0u;
            foreach (var (_, pieceCrc, length) in pieces) crc = MaskedCrc32C.Combine(crc, pieceCrc, length);
            _crc[i] = MaskedCrc32C.Mask(crc);
            pieces.Clear();
        }
    }

    private async Task WriteIndexAsync(IShardStorage storage, string path, IReadOnlyList<BundleEntry> entries, CancellationToken ct)
    {
        using var ms = new MemoryStream();
        TensorBundleIndex.Serialize(ms, Plan.Header, entries);
        using var file = storage.CreateForWrite(path, preferDirectIO: false);
        await file.WriteAsync(ms.GetBuffer().AsMemory(0, (int)ms.Length), 0, ct).ConfigureAwait(false);
        file.FlushToDisk();
    }

    private void MarkStaged(int index)
    {
        if (!_staged[index].TrySetResult()) return;
        DeviceBuffer? clone;
        lock (_sync)
        {
            clone = _clones[index];
            _clones[index] = null;
        }
        if (clone is not null)
        {
            _pipeline.ReleaseCopyOnWrite(clone.LengthInBytes);
            clone.Dispose(); // safe with copies in flight; none remain once staged
        }
        if (Interlocked.Decrement(ref _stagedRemaining) == 0) _snapshotted.TrySetResult();
    }

    /// <summary>After a failure or cancellation, when nothing reads device sources any more: unblock every barrier.</summary>
    private void ReleaseBarriers()
    {
        for (var i = 0; i < _staged.Length; i++)
        {
            if (_staged[i].Task.IsCompleted) continue;
            _staged[i].TrySetResult();
            DeviceBuffer? clone;
            lock (_sync)
            {
                clone = _clones[i];
                _clones[i] = null;
            }
            if (clone is not null)
            {
                _pipeline.ReleaseCopyOnWrite(clone.LengthInBytes);
                clone.Dispose();
            }
        }
    }

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

    internal static string TempName(string path) => TemporaryFileNames.ForBundleFile(path);

    private static void DisposeQuietly(IShardFile? f)
    {
        try { f?.Dispose(); }
        catch (IOException) { }
    }

    private static void DeleteQuietly(IShardStorage storage, string? path)
    {
        // A save that failed (or was cancelled) before creating some of its files has null paths for them.
        if (path is null) return;
        try { storage.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    // CopyStart: Stopwatch timestamp of the copy's enqueue when tracing, else 0.
    private sealed record StagedChunk(SaveChunk Chunk, StagingSlot Slot, DeviceEvent? LastCopy, long CopyStart);
}

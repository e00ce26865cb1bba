using System.Diagnostics;
using System.Threading.Channels;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline.Staging;

namespace CheckpointGpu.Pipeline.Saving;

/// <summary>The stages of a save: copy engine per accelerator → ring slots → writers (checksum, positional write).</summary>
internal sealed partial class SaveOperation
{
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
            foreach (var accelerator in Accelerators.Count == 0 ? [_pipeline.Accelerator] : Accelerators)
                await _pipeline.CopyStreamFor(accelerator).Record().Completion.ConfigureAwait(false);
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
                // The last copy per stream: streams are in order, but two accelerators' streams are not ordered with each other.
                List<DeviceEvent>? copies = null;
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
                                var stream = _pipeline.CopyStreamFor(view.Buffer!.Accelerator);
                                var ev = stream.EnqueueCopyToHost(view.SubView(piece.OffsetInTensor, piece.LengthInBytes), slot.Buffer,
                                    slot.BaseOffset + piece.OffsetInSlot);
                                copies ??= [];
                                var at = copies.FindIndex(e => ReferenceEquals(e.Stream, stream));
                                if (at >= 0) copies[at] = ev;
                                else copies.Add(ev);
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
                    SignalStaged(chunk, copies);
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
                await output.WriteAsync(new StagedChunk(chunk, slot, copies, copyStart), ct).ConfigureAwait(false);
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
            if (job.Copies is { } copies)
            {
                foreach (var ev in copies)
                {
                    if (!ev.IsCompleted) await ev.Completion.WaitAsync(ct).ConfigureAwait(false);
                    else if (ev.Error is { } error) throw error;
                }
            }
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

    /// <summary>Marks the tensors whose last byte is in <paramref name="chunk"/> staged once the last copy of every stream
    /// completes (each stream is in order, so every earlier piece's copy on it has completed too).</summary>
    private void SignalStaged(SaveChunk chunk, List<DeviceEvent>? copies)
    {
        DeviceEvent? lastCopy = copies is null ? null : copies.Count == 1 ? copies[0] : null;
        if (copies is { Count: > 1 })
        {
            // Rare (a slot holding bytes of two accelerators): wait for each stream's last copy.
            List<int>? endedMany = null;
            foreach (var piece in chunk.Pieces)
                if (piece.OffsetInTensor + piece.LengthInBytes == Plan.Tensors[piece.Tensor].Size) (endedMany ??= []).Add(piece.Tensor);
            if (endedMany is null) return;
            _ = Task.WhenAll(copies.Select(c => c.Completion)).ContinueWith(static (task, state) =>
            {
                var (op, tensors) = ((SaveOperation, List<int>))state!;
                if (task.IsCompletedSuccessfully) foreach (var t in tensors) op.MarkStaged(t);
            }, (this, endedMany), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            return;
        }
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

    // CopyStart: Stopwatch timestamp of the copy's enqueue when tracing, else 0.
    private sealed record StagedChunk(SaveChunk Chunk, StagingSlot Slot, List<DeviceEvent>? Copies, long CopyStart);
}

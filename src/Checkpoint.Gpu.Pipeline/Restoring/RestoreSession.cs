using System.Threading.Channels;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline.Staging;

namespace CheckpointGpu.Pipeline;

/// <summary>
/// A checkpoint opened for pipelined restore: readers (positional, in file order, <see cref="CheckpointPipelineOptions.ReaderCount"/> in flight) → ring →
/// host-to-device copies, with every tensor's CRC32C verified as its bytes pass; plus a bounded host cache that
/// prefetches entries whose destination does not exist yet (restore-on-create), so creating a variable costs only
/// its host-to-device copy (<see cref="TryClaim"/>).
/// </summary>
/// <remarks>
/// <para>Restores share the pipeline's ring with saves; they run between saves. Every tensor's CRC32C is checked
/// before any of its bytes reach device memory (held in its ring slots, or for tensors larger than the ring in a device
/// scratch buffer, until verified). A mismatch surfaces as a <see cref="CheckpointFormatException"/>
/// (<see cref="CheckpointFormatError.ChecksumMismatch"/>) naming the data file, key, shard, offset and length; the
/// destination keeps its previous value (tensors earlier in file order may already hold their verified values).</para>
/// <para>Host memory: the ring only (plus the prefetch cache, bounded by
/// <see cref="CheckpointPipelineOptions.RestoreCacheBudgetInBytes"/>). Device memory: at most one scratch buffer per
/// stream, as large as the largest tensor that spans more windows than the ring has slots (half as many on accelerators
/// whose memory is host memory), plus 12 KiB, during one call. On those CPU accelerators the scratch is host memory: the
/// price of verify-before-write for tensors larger than the ring (TensorFlow's <c>RestoreV2</c> reads every tensor into a
/// host tensor of its full size before assigning it); where device memory is host memory (those and OpenCL CPU devices,
/// <see cref="Accelerator.DeviceMemoryIsHostMemory"/>) it is kept for the next restore until a save runs
/// (<see cref="CheckpointPipelineOptions.RetainRestoreScratch"/>), since fresh memory is slow to touch.</para>
/// <para>Thread-safe. Dispose with <see cref="DisposeAsync"/>, which waits for outstanding reads and claims.</para>
/// </remarks>
public sealed class RestoreSession : IAsyncDisposable, IDisposable
{
    private readonly CheckpointPipeline _pipeline;
    private readonly Dictionary<string, BundleEntry> _byKey;
    private readonly Dictionary<string, CacheEntry> _cache = new(StringComparer.Ordinal);
    private readonly HashSet<string> _claimed = new(StringComparer.Ordinal);
    private readonly List<Task> _outstanding = [];
    private readonly Lock _sync = new();
    private long _cacheReserved;
    private bool _disposed;
    // This session's IO settings (readers, prefetch bytes, ring shape, storage): applied per restore.
    private readonly CheckpointPipelineOptions _options;

    /// <summary>Process-wide count of tensor bytes read straight into host-memory scratch buffers (for tests and benchmarks).</summary>
    internal static long BytesReadIntoScratch;

    internal RestoreSession(CheckpointPipeline pipeline, CheckpointPipelineOptions options, string prefix, BundleHeader header, IReadOnlyList<BundleEntry> entries)
    {
        _pipeline = pipeline;
        _options = options;
        Prefix = prefix;
        Header = header;
        Entries = entries;
        _byKey = new Dictionary<string, BundleEntry>(entries.Count, StringComparer.Ordinal);
        foreach (var e in entries) _byKey.TryAdd(e.Key, e);
    }

    /// <summary>The checkpoint prefix.</summary>
    public string Prefix { get; }

    /// <summary>The bundle header.</summary>
    public BundleHeader Header { get; }

    /// <summary>All entries, in key order.</summary>
    public IReadOnlyList<BundleEntry> Entries { get; }

    /// <summary>Bytes currently reserved by the prefetch cache.</summary>
    public long CachedBytes => Interlocked.Read(ref _cacheReserved);

    /// <summary>Looks up an entry.</summary>
    /// <param name="key">The key.</param>
    /// <param name="entry">The entry when found.</param>
    /// <returns>False when absent.</returns>
    public bool TryGetEntry(string key, [System.Diagnostics.CodeAnalysis.MaybeNullWhen(false)] out BundleEntry entry) =>
        _byKey.TryGetValue(key, out entry);

    /// <summary>Reads the given entries into their device destinations, in file order, verifying checksums.</summary>
    /// <param name="targets">Keys and destinations (fixed-size dtypes; each key at most once).</param>
    /// <param name="cancellationToken">Cancels the restore (in-flight reads and copies are drained first).</param>
    /// <returns>Completes when every value has landed in device memory.</returns>
    /// <exception cref="ArgumentException">A destination's length differs from the entry's size, a key repeats, a stream belongs to another accelerator than its destination, or the dtype is not fixed-size.</exception>
    /// <exception cref="NotSupportedException">An entry is partitioned (sliced).</exception>
    /// <exception cref="CheckpointFormatException">A key is not in the checkpoint (<see cref="CheckpointFormatError.KeyNotFound"/>, naming the
    /// <c>.index</c> file and the key; thrown before anything is read), a checksum mismatch or a truncated data file.</exception>
    /// <exception cref="FileNotFoundException">A data file is missing.</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public Task RestoreAsync(IReadOnlyList<RestoreTarget> targets, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(targets);
        if (cancellationToken.IsCancellationRequested) return Task.FromCanceled(cancellationToken);
        var requests = new List<ReadRequest>(targets.Count);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in targets)
        {
            var entry = Lookup(t.Key);
            CheckFixed(entry);
            if (!seen.Add(t.Key)) throw new ArgumentException($"Key '{t.Key}' is requested twice.", nameof(targets));
            if (!t.Destination.IsValid || t.Destination.LengthInBytes != entry.Size)
                throw new ArgumentException($"'{t.Key}': the destination is {t.Destination.LengthInBytes} bytes, the entry holds {entry.Size}.", nameof(targets));
            requests.Add(new ReadRequest(entry, t.Destination, StreamFor(t.Destination, t.Stream, nameof(targets)), null) { DestinationIsNew = t.DestinationIsNew });
        }
        return Track(ReadAsync(requests, cancellationToken));
    }

    /// <summary>
    /// Prefetches entries into host memory (within <see cref="CheckpointPipelineOptions.RestoreCacheBudgetInBytes"/>,
    /// in file order; entries that do not fit are left for on-demand reads at claim time).
    /// </summary>
    /// <param name="keys">Keys whose destinations do not exist yet; unknown, non-fixed-size or already cached keys are skipped.</param>
    /// <param name="cancellationToken">Cancels the prefetch.</param>
    /// <returns>Completes when the selected entries are cached and verified.</returns>
    /// <exception cref="CheckpointFormatException">A checksum mismatch or truncated data file (claims of the failed entries fail with it too).</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public Task PrefetchAsync(IEnumerable<string> keys, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(keys);
        if (cancellationToken.IsCancellationRequested) return Task.FromCanceled(cancellationToken);
        var requests = new List<ReadRequest>();
        var budget = _options.RestoreCacheBudgetInBytes;
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            // Smallest first (a small value costs a whole engine pass when read on demand; a large one streams at disk speed).
            var selected = keys.Distinct(StringComparer.Ordinal)
                .Select(k => _byKey.TryGetValue(k, out var e) ? e : null)
                .Where(e => e is not null && !e.IsPartitioned && DTypes.IsFixedSize(e.DType) && !_cache.ContainsKey(e.Key) && !_claimed.Contains(e.Key))
                .OrderBy(e => e!.Size);
            foreach (var e in selected)
            {
                if (e!.Size > Array.MaxLength || _cacheReserved + e.Size > budget) break;
                _cacheReserved += e.Size;
                var data = GC.AllocateUninitializedArray<byte>((int)e.Size, pinned: true);
                var cached = new CacheEntry(e, data);
                _cache[e.Key] = cached;
                requests.Add(new ReadRequest(e, default, null, cached));
            }
        }
        return Track(PrefetchCoreAsync(requests, cancellationToken));
    }

    private async Task PrefetchCoreAsync(List<ReadRequest> requests, CancellationToken ct)
    {
        try
        {
            await ReadAsync(requests, ct).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            foreach (var r in requests) r.Cache!.Ready.TrySetException(ex);
            throw;
        }
    }

    /// <summary>
    /// Restore-on-create: hands the value of <paramref name="key"/> to a newly created destination, at most once
    /// per key. From the prefetch cache this costs one host-to-device copy; otherwise the entry is read through the
    /// ring on demand.
    /// </summary>
    /// <param name="key">The key.</param>
    /// <param name="destination">The new variable's device memory; length must equal the entry's size. Treated as new
    /// (<see cref="RestoreTarget.DestinationIsNew"/>): discard it if <paramref name="completion"/> faults.</param>
    /// <param name="completion">Completes when the value has landed (faults with the read or checksum error).</param>
    /// <returns>False when the key is not in the checkpoint or was already claimed (then <paramref name="completion"/> is completed).</returns>
    /// <exception cref="ArgumentException">Wrong destination length or non-fixed-size dtype.</exception>
    /// <exception cref="ObjectDisposedException">The session is disposed.</exception>
    public bool TryClaim(string key, DeviceView destination, out Task completion)
    {
        ArgumentNullException.ThrowIfNull(key);
        completion = Task.CompletedTask;
        if (!_byKey.TryGetValue(key, out var entry)) return false;
        CheckFixed(entry);
        if (!destination.IsValid || destination.LengthInBytes != entry.Size)
            throw new ArgumentException($"'{key}': the destination is {destination.LengthInBytes} bytes, the entry holds {entry.Size}.", nameof(destination));
        var stream = StreamFor(destination, null, nameof(destination));
        CacheEntry? cached;
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_claimed.Add(key)) return false;
            _cache.TryGetValue(key, out cached);
        }
        completion = cached is not null
            ? Track(ClaimFromCacheAsync(cached, destination, stream))
            : Track(ReadAsync([new ReadRequest(entry, destination, stream, null) { DestinationIsNew = true }], CancellationToken.None));
        return true;
    }

    /// <summary>
    /// Takes the prefetched, checksum-verified bytes of <paramref name="key"/> out of the cache, if they are there and
    /// ready, and marks the key claimed. For callers that copy to the device themselves, synchronously and in their own
    /// stream order (restore-on-create of a variable that is used right after it is created).
    /// </summary>
    /// <param name="key">The key.</param>
    /// <param name="data">The payload (exactly the entry's size), owned by the caller from now on.</param>
    /// <returns>False when the key was not prefetched, is still in flight, failed, or was already claimed.</returns>
    /// <exception cref="ObjectDisposedException">The session is disposed.</exception>
    public bool TryTakeCached(string key, out ReadOnlyMemory<byte> data)
    {
        ArgumentNullException.ThrowIfNull(key);
        data = default;
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_cache.TryGetValue(key, out var cached) || !cached.Ready.Task.IsCompletedSuccessfully || _claimed.Contains(key)) return false;
            _claimed.Add(key);
            _cache.Remove(key);
            _cacheReserved -= cached.Entry.Size;
            data = cached.Data;
            return true;
        }
    }

    private async Task ClaimFromCacheAsync(CacheEntry cached, DeviceView destination, AcceleratorStream stream)
    {
        try
        {
            await cached.Ready.Task.ConfigureAwait(false);
            var ev = stream.EnqueueCopyFromHost((ReadOnlyMemory<byte>)cached.Data, destination);
            await ev.Completion.ConfigureAwait(false);
        }
        finally
        {
            lock (_sync)
            {
                if (_cache.Remove(cached.Entry.Key)) _cacheReserved -= cached.Entry.Size;
            }
        }
    }

    /// <summary>Waits for outstanding reads and claims, then drops the cache.</summary>
    /// <returns>Completes when released.</returns>
    public async ValueTask DisposeAsync()
    {
        Task[] outstanding;
        lock (_sync)
        {
            if (_disposed) return;
            _disposed = true;
            outstanding = [.. _outstanding];
        }
        try
        {
            await Task.WhenAll(outstanding).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Each failure was reported to the caller that started the operation.
        }
        lock (_sync)
        {
            _cache.Clear();
            _cacheReserved = 0;
        }
    }

    /// <summary>
    /// Drops the cache and refuses new operations without waiting: reads already running finish on their own (they hold
    /// the ring until then) and complete their callers' tasks. For synchronous owners with nothing in flight; prefer
    /// <see cref="DisposeAsync"/>.
    /// </summary>
    public void Dispose()
    {
        lock (_sync)
        {
            _disposed = true;
            _cache.Clear();
            _cacheReserved = 0;
        }
    }

    private Task Track(Task task)
    {
        lock (_sync)
        {
            _outstanding.RemoveAll(t => t.IsCompleted);
            _outstanding.Add(task);
        }
        return task;
    }

    /// <summary>
    /// The stream a destination's copies go on: <paramref name="requested"/> when given (it must belong to the
    /// destination's accelerator), the pipeline's restore stream for a destination on the pipeline's accelerator, else
    /// the destination accelerator's default stream.
    /// </summary>
    private AcceleratorStream StreamFor(DeviceView destination, AcceleratorStream? requested, string paramName)
    {
        var accelerator = destination.Buffer!.Accelerator;
        if (requested is not null)
        {
            if (!ReferenceEquals(requested.Accelerator, accelerator))
                throw new ArgumentException("The stream belongs to another accelerator than the destination.", paramName);
            return requested;
        }
        return ReferenceEquals(accelerator, _pipeline.Accelerator) ? _pipeline.RestoreStream : accelerator.DefaultStream;
    }

    private BundleEntry Lookup(string key) =>
        _byKey.TryGetValue(key, out var e) ? e : throw new CheckpointFormatException(CheckpointFormatError.KeyNotFound, BundleNaming.IndexFile(Prefix),
            "key not found in checkpoint", key);

    private static void CheckFixed(BundleEntry entry)
    {
        if (entry.IsPartitioned)
            throw new NotSupportedException($"'{entry.Key}' is a partitioned (sliced) tensor; read its slices with TensorBundleReader.");
        if (!DTypes.IsFixedSize(entry.DType))
            throw new ArgumentException($"'{entry.Key}' is {DTypes.GetName(entry.DType)}, not a fixed-size dtype; read it with TensorBundleReader.", nameof(entry));
    }

    // ------------------------------------------------------------------ the read engine

    /// <summary>
    /// The one read engine: windows of at most one slot, in file order → <see cref="CheckpointPipelineOptions.ReaderCount"/>
    /// positional (O_DIRECT) reads in flight, each reader checksumming its pieces (in parallel) → one in-order consumer that
    /// joins the pieces' CRCs (<see cref="MaskedCrc32C.Combine"/>) and lets a tensor's bytes reach its device buffer only
    /// after the tensor's CRC matched → an in-order releaser that returns each slot once every copy out of it completed.
    /// </summary>
    /// <remarks>
    /// Verify-before-device: a tensor spanning at most <see cref="HoldLimitInSlots"/> windows keeps its slots until its last
    /// piece is verified, then its host-to-device copies are enqueued (no memory beyond the ring). A larger tensor streams
    /// into a scratch buffer on the destination's accelerator (one per stream, sized to the largest such tensor, freed at
    /// the end of the call) and is copied device-to-device into its destination after verification. Where that scratch is
    /// host memory (the CPU accelerators, <see cref="DeviceBuffer.IsHostMemory"/>) its windows are read straight into it
    /// (block-aligned, <c>O_DIRECT</c>) instead of through ring slots, so such a tensor costs one copy, not two, and the
    /// scratch is used from half the ring up (a tensor holding the whole ring would stall the reads while its copies drain);
    /// the next tensor's reads into a shared scratch wait for the previous tensor's copy out of it. Device-to-device copies run on a
    /// stream of their own (created per call, after the destination stream's earlier work has completed), so the slot
    /// copies of the tensors behind it keep the ring moving. Either way a
    /// destination holds its previous value or the whole verified tensor, never part of one. The exception is a new
    /// destination (<see cref="RestoreTarget.DestinationIsNew"/>, restore-on-create): it holds no value and its caller
    /// discards it when the call fails, so its bytes stream straight in, whatever the tensor's size.
    /// </remarks>
    private async Task ReadAsync(List<ReadRequest> requests, CancellationToken ct)
    {
        if (requests.Count == 0) return;
        requests.Sort((a, b) => a.Entry.ShardId != b.Entry.ShardId ? a.Entry.ShardId.CompareTo(b.Entry.ShardId) : a.Entry.Offset.CompareTo(b.Entry.Offset));
        var options = _options;
        var storage = options.Storage;
        var verify = options.ComputeChecksums;
        var files = new Dictionary<int, IShardFile>();
        var streams = new HashSet<AcceleratorStream>();
        var scratch = new Dictionary<AcceleratorStream, DeviceBuffer>();
        var scratchNeeds = new Dictionary<AcceleratorStream, long>();
        var scratchStreams = new Dictionary<AcceleratorStream, AcceleratorStream>();
        await _pipeline.RingLock.WaitAsync(ct).ConfigureAwait(false);
        // IO settings apply per restore: the ring takes this session's shape while we hold the ring lock.
        StagingRing ring;
        try { ring = _pipeline.EnsureRing(options); }
        catch
        {
            _pipeline.RingLock.Release();
            throw;
        }
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var failures = new List<Exception>();
        void Fail(Exception ex)
        {
            lock (failures)
            {
                if (ex is OperationCanceledException && failures.Count > 0) return;
                failures.Add(ex);
            }
            try { cts.Cancel(); }
            catch (ObjectDisposedException) { }
        }
        try
        {
            foreach (var r in requests)
            {
                if (files.ContainsKey(r.Entry.ShardId)) continue;
                if (r.Entry.ShardId < 0 || r.Entry.ShardId >= Header.ShardCount)
                    throw new CheckpointFormatException(CheckpointFormatError.InvalidShardId, BundleNaming.IndexFile(Prefix), "entry names a data shard that does not exist",
                        r.Entry.Key, r.Entry.ShardId);
                files[r.Entry.ShardId] = storage.OpenForRead(BundleNaming.DataFile(Prefix, r.Entry.ShardId, Header.ShardCount), options.UseDirectIO);
            }
            foreach (var r in requests)
            {
                var length = files[r.Entry.ShardId].Length;
                if (r.Entry.Offset < 0 || r.Entry.Size < 0 || r.Entry.Offset > length - r.Entry.Size)
                    throw new CheckpointFormatException(CheckpointFormatError.TruncatedData, DataPath(r.Entry), "entry extends past the end of the data file",
                        r.Entry.Key, r.Entry.ShardId, r.Entry.Offset, r.Entry.Size, comparison: $"needs {r.Entry.Offset + r.Entry.Size} bytes, file has {length}");
                if (r.Stream is not null) streams.Add(r.Stream);
            }
            foreach (var r in requests)
                if (r.Entry.Size == 0) Complete(r, verify);
            var windows = BuildWindows(requests, ring.SlotSizeInBytes);
            var holdLimit = HoldLimitInSlots;
            foreach (var r in requests)
            {
                if (r.Cache is not null) continue;
                if (r.DestinationIsNew)
                {
                    // No previous value to protect (the caller discards the destination on failure): stream straight into it,
                    // so its copies overlap the reads instead of waiting for the tensor's last window.
                    r.Direct = true;
                    continue;
                }
                // Host memory (CPU accelerators): the scratch is read into directly, so it costs no extra copy, and a tensor
                // holding half the ring or more would stall the reads until its copies drain: scratch from half the ring up.
                if (r.PieceCount <= (r.Destination.Buffer!.IsHostMemory ? holdLimit / 2 : holdLimit)) continue;
                r.UsesScratch = true;
                // Room for block-aligned reads (tensors start anywhere in a data file, buffers need not start on a block):
                // on host-memory accelerators the windows are read straight into the scratch (below).
                var need = r.Entry.Size + 3 * IShardFile.DirectIOAlignmentInBytes;
                if (!scratchNeeds.TryGetValue(r.Stream!, out var needed) || needed < need) scratchNeeds[r.Stream!] = need;
            }
            foreach (var (stream, need) in scratchNeeds)
            {
                // The previous restore's scratch when kept (warm memory: CheckpointPipelineOptions.RetainRestoreScratch).
                var buffer = _pipeline.TakeRetainedScratch(stream.Accelerator, need);
                if (buffer is null)
                {
                    buffer = stream.Accelerator.Allocate(need);
                    // Fresh memory: on host-memory accelerators its page faults would otherwise be paid by the first
                    // reads or copies into it, on the ring's critical path (a background populate, contents unchanged).
                    buffer.AdviseWillWrite();
                }
                scratch[stream] = buffer;
            }
            foreach (var r in requests)
            {
                if (!r.UsesScratch) continue;
                r.Scratch = scratch[r.Stream!];
                if (!scratchStreams.TryGetValue(r.Stream!, out var own))
                {
                    // The destination stream's earlier work comes first (the scratch stream is not ordered with it).
                    await r.Stream!.Record().Completion.WaitAsync(cts.Token).ConfigureAwait(false);
                    scratchStreams[r.Stream!] = own = r.Stream!.Accelerator.CreateStream();
                }
                r.ScratchStream = own;
            }
            // Host-memory scratch (CPU accelerators): its windows are read straight into it, saving the slot-to-scratch
            // copy (a third of the bytes a CPU restore moved). Consecutive users of one scratch are ordered explicitly:
            // the next tensor's reads wait for the previous tensor's copy out of the scratch (see Producer).
            var lastScratchUser = new Dictionary<DeviceBuffer, ReadRequest>();
            foreach (var r in requests)
            {
                if (!r.UsesScratch || !r.Scratch!.TryGetHostMemory(0, 0, out _, out var scratchAddress)) continue;
                r.ReadsIntoScratch = true;
                r.ScratchAlignment = (int)(-scratchAddress & (IShardFile.DirectIOAlignmentInBytes - 1));
                r.ScratchCopyOut = new TaskCompletionSource<(long ScratchStart, DeviceEvent Copied)[]>(TaskCreationOptions.RunContinuationsAsynchronously);
                r.PreviousScratchUser = lastScratchUser.GetValueOrDefault(r.Scratch);
                lastScratchUser[r.Scratch] = r;
            }
            if (lastScratchUser.Count > 0)
            {
                foreach (var r in requests) r.PieceCount = 0;
                windows = BuildWindows(requests, ring.SlotSizeInBytes);
            }
            var toReaders = Channel.CreateBounded<ReadJob>(new BoundedChannelOptions(ring.SlotCount) { FullMode = BoundedChannelFullMode.Wait, SingleWriter = true });
            var toConsumer = Channel.CreateBounded<ReadJob>(new BoundedChannelOptions(ring.SlotCount) { FullMode = BoundedChannelFullMode.Wait, SingleWriter = true, SingleReader = true });
            var toRelease = Channel.CreateBounded<ReadJob>(new BoundedChannelOptions(ring.SlotCount + 1)
            { FullMode = BoundedChannelFullMode.Wait, SingleWriter = true, SingleReader = true });
            var token = cts.Token;

            async Task Producer()
            {
                try
                {
                    foreach (var w in windows)
                    {
                        if (w.ScratchTarget is { PreviousScratchUser: { } previous })
                        {
                            // The shared scratch holds the previous tensor until its copy out completes: each window waits
                            // for the copy-out chunks of the range it overwrites (all on one stream: the last one suffices).
                            var chunks = await previous.ScratchCopyOut!.Task.WaitAsync(token).ConfigureAwait(false);
                            var end = w.ScratchOffset + AlignUp(w.NeededEnd - w.Start);
                            DeviceEvent? last = null;
                            foreach (var (start, copied) in chunks)
                            {
                                if (start >= end) break;
                                last = copied;
                            }
                            if (last is not null) await last.Completion.WaitAsync(token).ConfigureAwait(false);
                        }
                        var slot = await ring.RentAsync(token).ConfigureAwait(false);
                        var job = new ReadJob(w, slot);
                        await toReaders.Writer.WriteAsync(job, token).ConfigureAwait(false);
                        await toConsumer.Writer.WriteAsync(job, token).ConfigureAwait(false);
                    }
                }
                finally
                {
                    toReaders.Writer.TryComplete();
                    toConsumer.Writer.TryComplete();
                }
            }

            async Task Reader()
            {
                await foreach (var job in toReaders.Reader.ReadAllAsync(token).ConfigureAwait(false))
                {
                    try
                    {
                        var w = job.Window;
                        var file = files[w.Shard];
                        var readLength = (int)AlignUp(w.NeededEnd - w.Start);
                        var done = 0;
                        while (done < w.NeededEnd - w.Start)
                        {
                            var target = w.ScratchTarget is { } into
                                ? ScratchMemory(into, w.ScratchOffset + done, readLength - done)
                                : job.Slot.GetMemory(done, readLength - done);
                            var n = await file.ReadAsync(target, w.Start + done, token).ConfigureAwait(false);
                            if (n <= 0) break;
                            done += n;
                        }
                        if (done < w.NeededEnd - w.Start)
                            throw new CheckpointFormatException(CheckpointFormatError.TruncatedData, file.Path, "data file ended early (truncated while open?)",
                                shardId: w.Shard, offset: w.Start + done, length: w.NeededEnd - w.Start - done);
                        // Checksums and cache copies run here, on the readers (in parallel); the consumer only joins the CRCs.
                        for (var i = 0; i < w.Pieces.Count; i++)
                        {
                            var p = w.Pieces[i];
                            var span = w.ScratchTarget is { } into
                                ? ScratchMemory(into, w.ScratchOffset + p.OffsetInSlot, p.LengthInBytes).Span
                                : job.Slot.GetSpan(p.OffsetInSlot, p.LengthInBytes);
                            if (verify) job.PieceCrcs[i] = MaskedCrc32C.Compute(span);
                            if (w.ScratchTarget is not null) Interlocked.Add(ref BytesReadIntoScratch, p.LengthInBytes);
                            if (p.Request.Cache is { } cache) span.CopyTo(cache.Data.AsSpan((int)p.OffsetInTensor, p.LengthInBytes));
                        }
                        job.Read.TrySetResult();
                    }
                    catch (Exception ex)
                    {
                        job.Read.TrySetException(ex);
                        throw;
                    }
                }
            }

            async Task Consumer()
            {
                try
                {
                    await foreach (var job in toConsumer.Reader.ReadAllAsync(token).ConfigureAwait(false))
                    {
                        await job.Read.Task.WaitAsync(token).ConfigureAwait(false);
                        job.Slot.Transition(SlotState.Writing);
                        var pieces = job.Window.Pieces;
                        for (var i = 0; i < pieces.Count; i++)
                        {
                            var p = pieces[i];
                            var r = p.Request;
                            if (verify) r.Crc = p.OffsetInTensor == 0 ? job.PieceCrcs[i] : MaskedCrc32C.Combine(r.Crc, job.PieceCrcs[i], p.LengthInBytes);
                            if (r.ReadsIntoScratch)
                            {
                                // Read straight into the scratch: nothing to copy out of the slot.
                            }
                            else if (r.UsesScratch)
                                job.Events.Add(CopyFromSlot(job.Slot, p.OffsetInSlot, r.ScratchStream!, r.Scratch!.View(p.OffsetInTensor, p.LengthInBytes)));
                            else if (r.Direct)
                                job.Events.Add(CopyFromSlot(job.Slot, p.OffsetInSlot, r.Stream!, r.Destination.SubView(p.OffsetInTensor, p.LengthInBytes)));
                            else if (r.Cache is null)
                            {
                                r.Held.Add((job, p));
                                job.PendingHolds++;
                            }
                            if (p.OffsetInTensor + p.LengthInBytes == r.Entry.Size) Complete(r, verify);
                        }
                        job.Dispatched = true;
                        if (job.PendingHolds == 0) job.Resolved.TrySetResult();
                        await toRelease.Writer.WriteAsync(job, token).ConfigureAwait(false);
                    }
                }
                finally
                {
                    toRelease.Writer.TryComplete();
                }
            }

            async Task Releaser()
            {
                // Slots return in order, each after every copy out of it completed (STYLE B4).
                await foreach (var job in toRelease.Reader.ReadAllAsync(token).ConfigureAwait(false))
                {
                    await job.Resolved.Task.WaitAsync(token).ConfigureAwait(false);
                    foreach (var ev in job.Events) await ev.Completion.WaitAsync(token).ConfigureAwait(false);
                    ring.Return(job.Slot);
                }
            }

            async Task Guard(Task t)
            {
                try { await t.ConfigureAwait(false); }
                catch (Exception ex) { Fail(ex); }
            }

            var stages = new List<Task> { Guard(Producer()), Guard(Consumer()), Guard(Releaser()) };
            for (var i = 0; i < options.ReaderCount; i++) stages.Add(Guard(Reader()));
            await Task.WhenAll(stages).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            Fail(ex);
        }
        finally
        {
            // No read or device copy may still touch a slot (or a scratch buffer) when it goes back to the pool.
            foreach (var stream in scratchStreams.Values.Concat(streams))
            {
                try
                {
                    await stream.Record().Completion.ConfigureAwait(false);
                    // Device errors are also reported by the stream's next synchronization; consume them here.
                    await stream.SynchronizeAsync(CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is AcceleratorException or OperationCanceledException or ObjectDisposedException)
                {
                    Fail(ex);
                }
            }
            foreach (var stream in scratchStreams.Values) stream.Dispose();
            // Kept for the next restore where device memory is host memory and nothing failed (a failed device copy may
            // still own it).
            foreach (var b in scratch.Values) _pipeline.RetainOrFreeScratch(b, options.RetainRestoreScratch && failures.Count == 0);
            ring.ResetAll();
            _pipeline.RingLock.Release();
            foreach (var f in files.Values) f.Dispose();
        }
        if (failures.Count > 0)
        {
            // The first failure surfaces; later ones are attached to it (their messages, in order).
            if (failures.Count > 1) failures[0].Data["CheckpointGpu.LaterFailures"] = failures.Skip(1).Select(e => e.Message).ToArray();
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failures[0]);
        }
    }

    /// <summary>
    /// Tensors spanning at most this many windows are held in their slots until verified; larger ones go through a
    /// device scratch buffer. The whole ring: a held tensor's later windows can always rent a slot, because every slot
    /// not held by it is released as soon as its copies complete.
    /// </summary>
    private int HoldLimitInSlots => _pipeline.Ring.SlotCount;

    private static DeviceEvent CopyFromSlot(StagingSlot slot, int offsetInSlot, AcceleratorStream stream, DeviceView destination) =>
        ReferenceEquals(stream.Accelerator, slot.Buffer.Accelerator)
            ? stream.EnqueueCopyFromHost(slot.Buffer, destination, slot.BaseOffset + offsetInSlot)
            : stream.EnqueueCopyFromHost(slot.Buffer.Pointer + (nint)(slot.BaseOffset + offsetInSlot), destination);

    /// <summary>The tensor's last piece passed the consumer: verify, then (only then) let its bytes reach the destination.</summary>
    private void Complete(ReadRequest r, bool verify)
    {
        if (verify)
        {
            var computed = MaskedCrc32C.Mask(r.Crc);
            if (computed != r.Entry.Crc32C)
            {
                var ex = new CheckpointFormatException(CheckpointFormatError.ChecksumMismatch, DataPath(r.Entry), "checksum mismatch for tensor",
                    r.Entry.Key, r.Entry.ShardId, r.Entry.Offset, r.Entry.Size, comparison: $"stored 0x{r.Entry.Crc32C:X8}, computed 0x{computed:X8}");
                r.Cache?.Ready.TrySetException(ex);
                throw ex;
            }
        }
        if (r.Cache is not null)
        {
            r.Cache.Ready.TrySetResult();
            return;
        }
        if (r.Direct) return;
        if (r.ReadsIntoScratch)
        {
            // In slot-sized chunks, so the next tensor's reads into the shared scratch wait only for the copies of the
            // range they overwrite, not for the whole tensor's copy.
            var chunkSize = (long)_pipeline.Ring.SlotSizeInBytes;
            var chunks = new (long ScratchStart, DeviceEvent Copied)[(int)((r.Entry.Size + chunkSize - 1) / chunkSize)];
            for (var i = 0; i < chunks.Length; i++)
            {
                var offset = i * chunkSize;
                var length = Math.Min(chunkSize, r.Entry.Size - offset);
                chunks[i] = (r.ScratchHead + offset,
                    r.ScratchStream!.EnqueueCopy(r.Scratch!.View(r.ScratchHead + offset, length), r.Destination.SubView(offset, length)));
            }
            // Not tied to the current slot: the slot holds none of these bytes, and slots return in order, so a slot
            // waiting for a whole tensor's copy out would hold back every slot behind it (the reads stalled 15-25 ms
            // behind each 256 MiB copy out). The call's end waits for the scratch stream.
            r.ScratchCopyOut!.TrySetResult(chunks);
            return;
        }
        if (r.UsesScratch)
        {
            // Ordered after this tensor's slot-to-scratch copies on the scratch stream (whose events release the slots) and
            // before the next tensor's; not tied to a slot (see above). The call's end waits for the scratch stream.
            r.ScratchStream!.EnqueueCopy(r.Scratch!.View(r.ScratchHead, r.Entry.Size), r.Destination);
            return;
        }
        foreach (var (job, p) in r.Held)
        {
            job.Events.Add(CopyFromSlot(job.Slot, p.OffsetInSlot, r.Stream!, r.Destination.SubView(p.OffsetInTensor, p.LengthInBytes)));
            if (--job.PendingHolds == 0 && job.Dispatched) job.Resolved.TrySetResult();
        }
        r.Held.Clear();
    }

    private static Memory<byte> ScratchMemory(ReadRequest r, long offsetInScratch, int lengthInBytes) =>
        r.Scratch!.TryGetHostMemory(offsetInScratch, lengthInBytes, out var memory, out _)
            ? memory
            : throw new InvalidOperationException("The scratch buffer is no longer host memory.");

    private string DataPath(BundleEntry e) => BundleNaming.DataFile(Prefix, Math.Clamp(e.ShardId, 0, Header.ShardCount - 1), Header.ShardCount);

    private static long AlignUp(long n) => (n + IShardFile.DirectIOAlignmentInBytes - 1) & ~(long)(IShardFile.DirectIOAlignmentInBytes - 1);

    /// <summary>Cuts the sorted requests into file-aligned windows of at most one slot; each window is one read.</summary>
    private static List<ReadWindow> BuildWindows(List<ReadRequest> requests, int slotSize)
    {
        var windows = new List<ReadWindow>();
        ReadWindow? w = null;
        foreach (var r in requests)
        {
            var pos = r.Entry.Offset;
            var end = r.Entry.Offset + r.Entry.Size;
            if (r.ReadsIntoScratch)
            {
                // Windows of its own, laid out in the scratch as in the file from the block holding its first byte.
                var first = pos & ~(long)(IShardFile.DirectIOAlignmentInBytes - 1);
                r.ScratchHead = r.ScratchAlignment + pos - first;
                for (var start = first; pos < end; start += slotSize)
                {
                    var own = new ReadWindow(r.Entry.ShardId, start) { ScratchTarget = r, ScratchOffset = r.ScratchAlignment + start - first };
                    var stop = Math.Min(end, start + slotSize);
                    own.Pieces.Add(new ReadPiece(r, pos - r.Entry.Offset, (int)(stop - pos), (int)(pos - start)));
                    own.NeededEnd = stop;
                    r.PieceCount++;
                    windows.Add(own);
                    pos = stop;
                }
                w = null;
                continue;
            }
            while (pos < end)
            {
                if (w is null || w.Shard != r.Entry.ShardId || pos < w.Start || pos >= w.Start + slotSize)
                {
                    w = new ReadWindow(r.Entry.ShardId, pos & ~(long)(IShardFile.DirectIOAlignmentInBytes - 1));
                    windows.Add(w);
                }
                var stop = Math.Min(end, w.Start + slotSize);
                w.Pieces.Add(new ReadPiece(r, pos - r.Entry.Offset, (int)(stop - pos), (int)(pos - w.Start)));
                r.PieceCount++;
                w.NeededEnd = Math.Max(w.NeededEnd, stop);
                pos = stop;
            }
        }
        return windows;
    }

    private sealed class ReadRequest(BundleEntry entry, DeviceView destination, AcceleratorStream? stream, CacheEntry? cache)
    {
        public BundleEntry Entry { get; } = entry;

        public DeviceView Destination { get; } = destination;

        /// <summary>The stream the destination's copies go on (null for cache requests).</summary>
        public AcceleratorStream? Stream { get; } = stream;

        public CacheEntry? Cache { get; } = cache;

        public uint Crc { get; set; }

        /// <summary>Windows this tensor spans.</summary>
        public int PieceCount { get; set; }

        /// <summary>The destination is new (restore-on-create): discarded by the caller on failure.</summary>
        public bool DestinationIsNew { get; init; }

        /// <summary>Streamed straight into a new destination (too large to hold, nothing to protect).</summary>
        public bool Direct { get; set; }

        /// <summary>Staged in <see cref="Scratch"/> (too large to hold in slots until verified).</summary>
        public bool UsesScratch { get; set; }

        public DeviceBuffer? Scratch { get; set; }

        /// <summary>Its windows are read straight into <see cref="Scratch"/> (host memory), not through ring slots.</summary>
        public bool ReadsIntoScratch { get; set; }

        /// <summary>Bytes from the scratch's start to its first block-aligned address (when <see cref="ReadsIntoScratch"/>).</summary>
        public int ScratchAlignment { get; set; }

        /// <summary>Scratch offset of the tensor's first byte (its offset within its first file block when <see cref="ReadsIntoScratch"/>).</summary>
        public long ScratchHead { get; set; }

        /// <summary>The tensor read into the same scratch before this one; its copy out must complete before this one's reads.</summary>
        public ReadRequest? PreviousScratchUser { get; set; }

        /// <summary>
        /// The copy out of the scratch into the destination, in chunks (each chunk's first scratch offset and its copy),
        /// once enqueued after verification (set when <see cref="ReadsIntoScratch"/>).
        /// </summary>
        public TaskCompletionSource<(long ScratchStart, DeviceEvent Copied)[]>? ScratchCopyOut { get; set; }

        /// <summary>
        /// The stream of the scratch copies (slot → scratch, then scratch → destination): one per destination stream and
        /// call, so a long scratch-to-destination copy does not hold up the slot copies of the tensors behind it on the
        /// destination stream (the ring would stall); in-order with itself, so the next tensor's copies into the shared
        /// scratch wait for the previous tensor's copy out of it.
        /// </summary>
        public AcceleratorStream? ScratchStream { get; set; }

        /// <summary>Pieces waiting in their slots for the tensor's checksum.</summary>
        public List<(ReadJob Job, ReadPiece Piece)> Held { get; } = [];
    }

    private sealed class CacheEntry(BundleEntry entry, byte[] data)
    {
        public BundleEntry Entry { get; } = entry;

        public byte[] Data { get; } = data;

        public TaskCompletionSource Ready { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private readonly record struct ReadPiece(ReadRequest Request, long OffsetInTensor, int LengthInBytes, int OffsetInSlot);

    private sealed class ReadWindow(int shard, long start)
    {
        public int Shard { get; } = shard;

        public long Start { get; } = start;

        public long NeededEnd { get; set; }

        /// <summary>The request whose scratch this window is read into, or null for a ring-slot window.</summary>
        public ReadRequest? ScratchTarget { get; init; }

        /// <summary>Offset of <see cref="Start"/> in the scratch when <see cref="ScratchTarget"/> is set.</summary>
        public long ScratchOffset { get; init; }

        public List<ReadPiece> Pieces { get; } = [];
    }

    private sealed class ReadJob(ReadWindow window, StagingSlot slot)
    {
        public ReadWindow Window { get; } = window;

        public StagingSlot Slot { get; } = slot;

        /// <summary>Unmasked CRC-32C of each piece, computed by the reader.</summary>
        public uint[] PieceCrcs { get; } = new uint[window.Pieces.Count];

        public TaskCompletionSource Read { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Copies out of this slot (consumer thread only until <see cref="Resolved"/>).</summary>
        public List<DeviceEvent> Events { get; } = [];

        /// <summary>Pieces of this slot still waiting for their tensor's checksum.</summary>
        public int PendingHolds { get; set; }

        public bool Dispatched { get; set; }

        /// <summary>Set once every piece of the slot has its copy enqueued (or was dropped to the cache).</summary>
        public TaskCompletionSource Resolved { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}

using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.IO;
using CheckpointGpu.Pipeline;

namespace CheckpointGpu;

/// <summary>
/// The restore side of the IO device, as the matching walk sees it: one parsed index shared by the pipeline's
/// <see cref="RestoreSession"/> (device values) and a <see cref="TensorBundleReader"/> over the same index (object graph,
/// host state, strings, and the fallbacks below). Nothing is parsed twice and no value is read by another engine.
/// </summary>
/// <remarks>
/// <para><b>Device values.</b> While <see cref="Batching"/> (the top-level walk of a restore), each matched variable is
/// queued; <see cref="FlushAsync"/> hands the whole batch to <see cref="RestoreSession.RestoreAsync"/>, which reads it in
/// file order with O_DIRECT through the staging ring, checks each tensor's CRC32C in the readers before any byte reaches a
/// device, and copies on the variable's own stream (<see cref="Accelerator.DefaultStream"/>). Outside a batch (a value
/// matched when its variable is created: restore-on-create) the verified prefetched bytes are taken from the session's
/// cache and copied asynchronously on the variable's stream — ordered before anything queued on it later; the copy is
/// tracked in <see cref="Pending"/> for <see cref="LoadStatus.WaitAsync"/>; a caller-owned buffer (bring-your-own ILGPU,
/// read through the caller's own streams) is waited for at once — or, on a cache miss, read through the engine at once.</para>
/// <para><b>Fallbacks</b> (documented, still checksum-first): partitioned (sliced) values, big-endian bundles and
/// non-fixed-size dtypes and LZ4-compressed entries are read by <see cref="TensorBundleReader"/> into host memory — every stored tensor's CRC32C is
/// checked there — and copied to the device only afterwards; these cost one host buffer of the value's size.</para>
/// </remarks>
internal sealed class EngineTensorReader : ITensorReader
{
    private readonly TensorBundleReader _format;
    private readonly RestoreSession? _session;
    private readonly CheckpointPipeline? _ownedPipeline;
    private readonly byte[]? _graphBytes;
    private readonly List<(string Key, Variable Variable, bool IsNew)> _batch = [];
    private readonly List<(Variable Variable, byte[] Bytes)> _hostCopies = [];
    private readonly HashSet<string> _consumed = new(StringComparer.Ordinal);
    private bool _disposed;

    private EngineTensorReader(TensorBundleReader format, RestoreSession? session, CheckpointPipeline? ownedPipeline, byte[]? graphBytes, PendingValues pending)
    {
        _format = format;
        _session = session;
        _ownedPipeline = ownedPipeline;
        _graphBytes = graphBytes;
        Pending = pending;
    }

    /// <summary>
    /// Opens <paramref name="index"/> (parsed once by the caller) on <paramref name="pipeline"/> with the IO settings
    /// <paramref name="io"/> (applied to this restore: ring shape, readers, prefetch bytes); takes ownership of
    /// <paramref name="ownedPipeline"/> (disposed with the reader) when given.
    /// </summary>
    public static EngineTensorReader Open(TensorBundlePartIndex index, byte[]? objectGraphBytes, CheckpointPipeline pipeline, CheckpointPipelineOptions io,
        CheckpointPipeline? ownedPipeline, PendingValues pending)
    {
        TensorBundleReader? format = null;
        try
        {
            format = TensorBundleReader.OpenWithIndex(index);
            // Big-endian bundles are not streamed by the engine (their values need a byte swap in host memory).
            var session = index.Header.Endianness == BundleEndianness.Little ? pipeline.OpenRestore(index, io) : null;
            return new EngineTensorReader(format, session, ownedPipeline, objectGraphBytes, pending);
        }
        catch
        {
            format?.Dispose();
            ownedPipeline?.Dispose();
            throw;
        }
    }

    /// <summary>Device copies still landing (restore-on-create from the prefetch cache), shared with the status.</summary>
    public PendingValues Pending { get; }

    /// <summary>While true, matched variables are queued for <see cref="FlushAsync"/> instead of read at once.</summary>
    public bool Batching { get; set; }

    public string Prefix => _format.Prefix;

    public IEnumerable<string> Keys => _format.Entries.Where(e => !e.IsSliceEntry && e.Key.Length > 0).Select(e => e.Key);

    public bool TryGetInfo(string key, out StoredTensorInfo info)
    {
        if (_format.TryGetEntry(key, out var entry) && !entry.IsSliceEntry)
        {
            info = new StoredTensorInfo(entry.DType, entry.Shape, entry.Size, entry.ShardId, entry.Offset);
            return true;
        }
        info = default;
        return false;
    }

    public byte[]? ReadObjectGraphBytes()
    {
        if (_graphBytes is not null) return _graphBytes;
        if (!_format.TryGetEntry(CheckpointKeys.ObjectGraph, out var entry)) return null;
        if (entry.DType != DType.String || entry.Shape.Rank != 0)
            throw new CheckpointFormatException(CheckpointFormatError.MalformedProto, _format.IndexPath,
                "the object graph entry is not a DT_STRING scalar", entry.Key, comparison: $"found {DTypes.GetName(entry.DType)} {entry.Shape}");
        return _format.ReadStrings(entry)[0];
    }

    public void ReadIntoVariable(string key, Variable variable) => ReadIntoVariable(key, variable, isNew: false);

    /// <summary>
    /// <see cref="ReadIntoVariable(string, Variable)"/>; <paramref name="isNew"/> marks a variable being created
    /// (restore-on-create), which its factory disposes if this throws: when read at once (outside a batch) its bytes then
    /// stream straight into it.
    /// </summary>
    public void ReadIntoVariable(string key, Variable variable, bool isNew)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var entry = _format.GetEntry(key);
        _consumed.Add(key);
        // Change tracking (issue 14): the engine writes device memory without Variable.CopyFromHost, so bump the version
        // here — before any byte moves, conservative if the read then fails.
        variable.MarkModified();
        if (entry.IsPartitioned)
        {
            // Reassemble the whole tensor from its slices (fallback path).
            ReadSliceIntoVariable(key, TensorSlice.Full(entry.Shape.Rank), variable);
            return;
        }
        if (entry.Size != variable.LengthInBytes)
            throw new CheckpointFormatException(CheckpointFormatError.SizeMismatch, _format.IndexPath,
                "entry size does not match its dtype and shape", key, entry.ShardId, entry.Offset, entry.Size,
                comparison: $"expected {variable.LengthInBytes} bytes");
        if (entry.Size == 0) return;
        // A new variable's memory is written for the first time by this restore: on host-memory accelerators let its page
        // faults be taken ahead of the copies, in parallel with the reads (a no-op elsewhere).
        if (isNew && !variable.IsExternal) variable.Buffer.AdviseWillWrite();
        // LZ4-compressed entries (issue 14) are decompressed by the Format reader, which checks both checksums first.
        if (_session is null || !DTypes.IsFixedSize(entry.DType) || entry.Compression is not null)
        {
            ReadThroughHost(entry, variable);
            return;
        }
        if (_session.TryTakeCached(key, out var data))
        {
            // Verified bytes: one asynchronous host-to-device copy on the variable's stream (the array stays pinned until it completes).
            var copy = variable.Accelerator.DefaultStream.EnqueueCopyFromHost(data, variable.Buffer.AsView());
            // The caller's own buffer (bring-your-own ILGPU) is read through the caller's streams, which ours do not order: land it now.
            if (variable.IsExternal) SyncWait.Run(() => copy.Completion);
            else Pending.Add(copy.Completion);
            return;
        }
        // A new variable may take its bytes as they stream (DestinationIsNew) only when it is read right here, inside its
        // factory, which disposes it if this throws; in a batch it is flushed after the factory returned, so it keeps the
        // verify-before-device path like any existing variable.
        _batch.Add((key, variable, isNew && !Batching));
        if (!Batching) SyncWait.Run(() => FlushAsync(CancellationToken.None));
    }

    /// <summary>Checksum-first fallback: the whole value in host memory (verified by the Format reader), then one copy.</summary>
    private void ReadThroughHost(BundleEntry entry, Variable variable)
    {
        if (entry.Size > Array.MaxLength)
            throw new NotSupportedException($"{_format.Prefix}: '{entry.Key}' is {entry.Size} bytes; values above 2 GiB are restored only from little-endian bundles.");
        var bytes = GC.AllocateUninitializedArray<byte>((int)entry.Size);
        _format.ReadTensor(entry, bytes);
        QueueHostCopy(variable, bytes);
    }

    /// <summary>
    /// A verified host value waits for the end of the walk, so that a later corrupt value (another slice of the same
    /// partitioned variable, say) fails the restore before any of them reaches a device.
    /// </summary>
    private void QueueHostCopy(Variable variable, byte[] bytes)
    {
        _hostCopies.Add((variable, bytes));
        if (!Batching) SyncWait.Run(() => FlushAsync(CancellationToken.None));
    }

    /// <summary>
    /// Streams every queued variable through the engine (each key once per engine call, in file order), then copies the
    /// queued host-fallback values (already verified) to their devices.
    /// </summary>
    /// <param name="cancellationToken">Cancels the reads.</param>
    /// <returns>Completes when every queued value is in its device buffer.</returns>
    public async Task FlushAsync(CancellationToken cancellationToken)
    {
        try
        {
            await FlushEngineAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            _hostCopies.Clear();
            throw;
        }
        if (_hostCopies.Count == 0) return;
        var copies = _hostCopies.Select(c => c.Variable.Accelerator.DefaultStream.EnqueueCopyFromHost(c.Bytes, c.Variable.Buffer.AsView()).Completion).ToArray();
        _hostCopies.Clear();
        await Task.WhenAll(copies).ConfigureAwait(false);
    }

    private async Task FlushEngineAsync(CancellationToken cancellationToken)
    {
        while (_batch.Count > 0)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            var now = new List<RestoreTarget>(_batch.Count);
            var later = new List<(string, Variable, bool)>();
            foreach (var (key, variable, isNew) in _batch)
            {
                if (seen.Add(key)) now.Add(new RestoreTarget(key, variable.Buffer.AsView(), variable.Accelerator.DefaultStream, isNew));
                else later.Add((key, variable, isNew));   // two objects bound to one key: a second pass
            }
            _batch.Clear();
            _batch.AddRange(later);
            try
            {
                await _session!.RestoreAsync(now, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                _batch.Clear();
                throw;
            }
        }
    }

    /// <summary>
    /// Reads the values of <paramref name="keys"/> (those not consumed yet, fixed-size, little-endian) into the session's
    /// verified host cache, so that creating their variables later costs one host-to-device copy.
    /// </summary>
    public Task PrefetchAsync(IEnumerable<string> keys, CancellationToken cancellationToken) =>
        _session is null ? Task.CompletedTask : _session.PrefetchAsync(keys.Where(k => !_consumed.Contains(k) && !IsCompressed(k)), cancellationToken);

    private bool IsCompressed(string key) => _format.TryGetEntry(key, out var entry) && entry.Compression is not null;

    public void ReadSliceIntoVariable(string key, TensorSlice slice, Variable variable)
    {
        _consumed.Add(key);
        variable.MarkModified();   // change tracking, as in ReadIntoVariable
        if (variable.LengthInBytes == 0) return;
        if (variable.LengthInBytes > Array.MaxLength)
            throw new NotSupportedException($"{_format.Prefix}: slice {slice} of '{key}' is {variable.LengthInBytes} bytes; slices above 2 GiB are not supported on this path.");
        // Assembled in host memory from the stored slices, each checksum-verified, then one host → device copy.
        var bytes = new byte[variable.LengthInBytes];
        _format.ReadSlice(key, slice, bytes);
        QueueHostCopy(variable, bytes);
    }

    public HostTensor ReadHost(string key)
    {
        _consumed.Add(key);
        var entry = _format.GetEntry(key);
        if (entry.DType == DType.String)
            return HostTensor.FromOwnedStrings(entry.Shape, _format.ReadStrings(entry));
        if (!DTypes.IsFixedSize(entry.DType))
            throw new NotSupportedException($"{_format.Prefix}: key '{key}' has dtype {DTypes.GetName(entry.DType)}, which cannot be restored into host state.");
        if (entry.Size > Array.MaxLength)
            throw new NotSupportedException($"{_format.Prefix}: key '{key}' is {entry.Size} bytes, too large for host state.");
        var bytes = new byte[entry.Size];
        _format.ReadTensor(entry, bytes);
        return HostTensor.FromOwnedBytes(entry.DType, entry.Shape, bytes);
    }

    /// <summary>Closes the files and drops the prefetch cache (copies already enqueued keep their pinned bytes).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _session?.Dispose();
        _format.Dispose();
        _ownedPipeline?.Dispose();
    }
}

/// <summary>Device copies of one restore that may still be landing (restore-on-create); awaited by <see cref="LoadStatus.WaitAsync"/>.</summary>
internal sealed class PendingValues
{
    private readonly List<Task> _tasks = [];
    private readonly Lock _sync = new();

    public void Add(Task task)
    {
        lock (_sync)
        {
            _tasks.RemoveAll(t => t.IsCompletedSuccessfully);
            _tasks.Add(task);
        }
    }

    /// <summary>Completes when every copy added so far completed; faults with the first failure.</summary>
    public Task WhenAll()
    {
        lock (_sync) return _tasks.Count == 0 ? Task.CompletedTask : Task.WhenAll([.. _tasks]);
    }
}

/// <summary>
/// Runs an asynchronous restore step to completion for a synchronous API (<c>Restore</c>, restore-on-create inside a
/// constructor). Safe from deadlock: every await below it (the pipeline's read engine, <see cref="EngineTensorReader"/>,
/// <see cref="TrackableSaver.RestoreAsync"/>) uses <c>ConfigureAwait(false)</c>, so no continuation needs the caller's
/// <see cref="SynchronizationContext"/>; the synchronous part (the matching walk and the user's callbacks) still runs on
/// the calling thread.
/// </summary>
internal static class SyncWait
{
    public static void Run(Func<Task> operation) => Complete(operation(), "The restore was cancelled.");

    public static T Run<T>(Func<Task<T>> operation)
    {
        var task = operation();
        Complete(task, "The restore was cancelled.");
        return task.Result;   // completed successfully here
    }

    /// <summary>
    /// Waits for <paramref name="task"/> on a non-async primitive (<see cref="TrackableSaver.WaitForCompletion(Task)"/>),
    /// then rethrows its first exception as is, or an <see cref="OperationCanceledException"/> with <paramref name="cancelledMessage"/>.
    /// </summary>
    public static void Complete(Task task, string cancelledMessage)
    {
        TrackableSaver.WaitForCompletion(task);
        ThrowIfUnsuccessful(task, cancelledMessage);
    }

    /// <summary>Rethrows a completed <paramref name="task"/>'s first exception as is, or cancellation with <paramref name="cancelledMessage"/>.</summary>
    public static void ThrowIfUnsuccessful(Task task, string cancelledMessage)
    {
        if (task.IsFaulted) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(task.Exception!.InnerException!);
        if (task.IsCanceled) throw new OperationCanceledException(cancelledMessage);
    }
}

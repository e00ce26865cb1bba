using System.Buffers;
using System.Runtime.ExceptionServices;

namespace CheckpointGpu.Devices;

/// <summary>An ordered queue of asynchronous operations (copies, fills, markers) on one accelerator, like a CUDA stream or an in-order OpenCL command queue.</summary>
/// <remarks>
/// <para>Every <c>Enqueue…</c> method validates its arguments synchronously (throwing the BCL argument exceptions),
/// queues the work and returns a <see cref="DeviceEvent"/> at once. Operations on one stream run in the order they
/// were enqueued; operations on different streams may overlap.</para>
/// <para>Memory the stream owns or can reference-count (device buffers, <see cref="PinnedHostBuffer"/>s,
/// <see cref="Memory{T}"/> it pins) is kept alive until the operation completes. Raw host pointers are the
/// caller's responsibility: keep that memory alive and untouched until the returned event completes.</para>
/// <para>Failure model: a failed operation faults its own event, and the first failure since the last
/// synchronization is rethrown by the next <see cref="SynchronizeAsync"/>/<see cref="Synchronize"/>.</para>
/// <para>Thread-safety: all members are thread-safe; concurrent enqueues from several threads are ordered by
/// the order in which they take the stream's queue.</para>
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1711", Justification = "The established accelerator term (ILGPU AcceleratorStream, CUDA stream); not a System.IO.Stream.")]
public abstract class AcceleratorStream : IDisposable
{
    private readonly object _sync = new();
    private long _pending;
    private Exception? _firstError;
    private int _disposed;

    private protected AcceleratorStream(Accelerator accelerator)
    {
        Accelerator = accelerator;
    }

    /// <summary>The accelerator this stream belongs to.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>True after <see cref="Dispose"/> or after the accelerator was disposed.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0 || Accelerator.IsDisposed;

    /// <summary>Operations enqueued and not yet completed (diagnostics).</summary>
    public long PendingOperationCount => Interlocked.Read(ref _pending);

    // ---------------------------------------------------------------- device -> host

    /// <summary>Enqueues a copy of <paramref name="source"/> into a pinned host buffer.</summary>
    /// <param name="source">Device bytes to read; must belong to this stream's accelerator. Its length is the copy length.</param>
    /// <param name="destination">Host buffer receiving the bytes; kept alive by the stream until the copy completes.</param>
    /// <param name="destinationOffsetInBytes">Where in <paramref name="destination"/> the bytes go, in bytes.</param>
    /// <returns>The completion of the copy.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="destination"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="source"/> is default or belongs to another accelerator.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The destination range does not fit in <paramref name="destination"/>.</exception>
    /// <exception cref="ObjectDisposedException">This stream, its accelerator, the source buffer or the destination is disposed.</exception>
    /// <exception cref="AcceleratorException">The backend refused the operation.</exception>
    public DeviceEvent EnqueueCopyToHost(DeviceView source, PinnedHostBuffer destination, long destinationOffsetInBytes = 0)
    {
        ThrowIfDisposed();
        ValidateView(source, nameof(source));
        ArgumentNullException.ThrowIfNull(destination);
        ObjectDisposedException.ThrowIf(destination.IsDisposed, destination);
        ThrowHelper.ThrowIfRangeInvalid(destinationOffsetInBytes, source.LengthInBytes, destination.LengthInBytes, nameof(destinationOffsetInBytes), "destination host buffer");
        if (source.IsEmpty) return Record();
        var ev = Begin(new OperationResources(source.Buffer!.Handle, destination.Handle));
        return Submit(ev, e => EnqueueCopyToHostInternal(source, destination.UnsafePointer + (nint)destinationOffsetInBytes, e));
    }

    /// <summary>Enqueues a copy of <paramref name="source"/> into pageable host memory at a raw address.</summary>
    /// <param name="source">Device bytes to read; its length is the copy length.</param>
    /// <param name="hostDestination">Address of at least <c>source.LengthInBytes</c> writable bytes. The caller must keep this memory alive, and must not read it, until the returned event completes.</param>
    /// <returns>The completion of the copy.</returns>
    /// <exception cref="ArgumentException"><paramref name="hostDestination"/> is zero, or <paramref name="source"/> is default or foreign.</exception>
    /// <exception cref="ObjectDisposedException">This stream, its accelerator or the source buffer is disposed.</exception>
    /// <exception cref="AcceleratorException">The backend refused the operation.</exception>
    public DeviceEvent EnqueueCopyToHost(DeviceView source, nint hostDestination)
    {
        ThrowIfDisposed();
        ValidateView(source, nameof(source));
        if (hostDestination == 0) throw new ArgumentException("The host destination address is zero.", nameof(hostDestination));
        if (source.IsEmpty) return Record();
        var ev = Begin(new OperationResources(source.Buffer!.Handle, null));
        return Submit(ev, e => EnqueueCopyToHostInternal(source, hostDestination, e));
    }

    /// <summary>Enqueues a copy of <paramref name="source"/> into managed or native memory, which the stream pins until the copy completes.</summary>
    /// <param name="source">Device bytes to read; its length is the copy length.</param>
    /// <param name="destination">Receives the bytes at its start; must be at least <c>source.LengthInBytes</c> long. Do not read it before the event completes.</param>
    /// <returns>The completion of the copy.</returns>
    /// <exception cref="ArgumentException"><paramref name="source"/> is default or foreign.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="destination"/> is shorter than the source.</exception>
    /// <exception cref="ObjectDisposedException">This stream, its accelerator or the source buffer is disposed.</exception>
    /// <exception cref="AcceleratorException">The backend refused the operation.</exception>
    public DeviceEvent EnqueueCopyToHost(DeviceView source, Memory<byte> destination)
    {
        ThrowIfDisposed();
        ValidateView(source, nameof(source));
        ThrowHelper.ThrowIfRangeInvalid(0, source.LengthInBytes, destination.Length, nameof(destination), "destination memory");
        if (source.IsEmpty) return Record();
        var resources = new OperationResources(source.Buffer!.Handle, null);
        MemoryHandle pin;
        try { pin = destination.Pin(); }
        catch { resources.Release(); throw; }
        resources.AddPin(pin);
        var ev = Begin(resources);
        unsafe { return Submit(ev, e => EnqueueCopyToHostInternal(source, (nint)pin.Pointer, e)); }
    }

    // ---------------------------------------------------------------- host -> device

    /// <summary>Enqueues a copy from a pinned host buffer into <paramref name="destination"/>.</summary>
    /// <param name="source">Host buffer to read; kept alive by the stream until the copy completes.</param>
    /// <param name="destination">Device bytes to write; its length is the copy length.</param>
    /// <param name="sourceOffsetInBytes">Where in <paramref name="source"/> the bytes start, in bytes.</param>
    /// <returns>The completion of the copy.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="source"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is default or foreign.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The source range does not fit in <paramref name="source"/>.</exception>
    /// <exception cref="ObjectDisposedException">This stream, its accelerator, the source or the destination buffer is disposed.</exception>
    /// <exception cref="AcceleratorException">The backend refused the operation.</exception>
    public DeviceEvent EnqueueCopyFromHost(PinnedHostBuffer source, DeviceView destination, long sourceOffsetInBytes = 0)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(source);
        ValidateView(destination, nameof(destination));
        ObjectDisposedException.ThrowIf(source.IsDisposed, source);
        ThrowHelper.ThrowIfRangeInvalid(sourceOffsetInBytes, destination.LengthInBytes, source.LengthInBytes, nameof(sourceOffsetInBytes), "source host buffer");
        if (destination.IsEmpty) return Record();
        var ev = Begin(new OperationResources(destination.Buffer!.Handle, source.Handle));
        return Submit(ev, e => EnqueueCopyFromHostInternal(source.UnsafePointer + (nint)sourceOffsetInBytes, destination, e));
    }

    /// <summary>Enqueues a copy from pageable host memory at a raw address into <paramref name="destination"/>.</summary>
    /// <param name="hostSource">Address of at least <c>destination.LengthInBytes</c> readable bytes. The caller must keep this memory alive and unchanged until the returned event completes.</param>
    /// <param name="destination">Device bytes to write; its length is the copy length.</param>
    /// <returns>The completion of the copy.</returns>
    /// <exception cref="ArgumentException"><paramref name="hostSource"/> is zero, or <paramref name="destination"/> is default or foreign.</exception>
    /// <exception cref="ObjectDisposedException">This stream, its accelerator or the destination buffer is disposed.</exception>
    /// <exception cref="AcceleratorException">The backend refused the operation.</exception>
    public DeviceEvent EnqueueCopyFromHost(nint hostSource, DeviceView destination)
    {
        ThrowIfDisposed();
        if (hostSource == 0) throw new ArgumentException("The host source address is zero.", nameof(hostSource));
        ValidateView(destination, nameof(destination));
        if (destination.IsEmpty) return Record();
        var ev = Begin(new OperationResources(destination.Buffer!.Handle, null));
        return Submit(ev, e => EnqueueCopyFromHostInternal(hostSource, destination, e));
    }

    /// <summary>Enqueues a copy from managed or native memory, which the stream pins until the copy completes, into <paramref name="destination"/>.</summary>
    /// <param name="source">Bytes to read from its start; must be at least <c>destination.LengthInBytes</c> long. Do not modify it before the event completes.</param>
    /// <param name="destination">Device bytes to write; its length is the copy length.</param>
    /// <returns>The completion of the copy.</returns>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is default or foreign.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="source"/> is shorter than the destination.</exception>
    /// <exception cref="ObjectDisposedException">This stream, its accelerator or the destination buffer is disposed.</exception>
    /// <exception cref="AcceleratorException">The backend refused the operation.</exception>
    public DeviceEvent EnqueueCopyFromHost(ReadOnlyMemory<byte> source, DeviceView destination)
    {
        ThrowIfDisposed();
        ValidateView(destination, nameof(destination));
        ThrowHelper.ThrowIfRangeInvalid(0, destination.LengthInBytes, source.Length, nameof(source), "source memory");
        if (destination.IsEmpty) return Record();
        var resources = new OperationResources(destination.Buffer!.Handle, null);
        MemoryHandle pin;
        try { pin = source.Pin(); }
        catch { resources.Release(); throw; }
        resources.AddPin(pin);
        var ev = Begin(resources);
        unsafe { return Submit(ev, e => EnqueueCopyFromHostInternal((nint)pin.Pointer, destination, e)); }
    }

    // ---------------------------------------------------------------- device -> device, fill, marker

    /// <summary>Enqueues a device-to-device copy between two views of this accelerator.</summary>
    /// <param name="source">Bytes to read.</param>
    /// <param name="destination">Bytes to write; same length as <paramref name="source"/>; must not overlap it.</param>
    /// <returns>The completion of the copy.</returns>
    /// <exception cref="ArgumentException">A view is default or foreign, the lengths differ, or the ranges overlap.</exception>
    /// <exception cref="ObjectDisposedException">This stream, its accelerator or either buffer is disposed.</exception>
    /// <exception cref="AcceleratorException">The backend refused the operation.</exception>
    public DeviceEvent EnqueueCopy(DeviceView source, DeviceView destination)
    {
        ThrowIfDisposed();
        ValidateView(source, nameof(source));
        ValidateView(destination, nameof(destination));
        if (source.LengthInBytes != destination.LengthInBytes)
            throw new ArgumentException($"Source length ({source.LengthInBytes} bytes) and destination length ({destination.LengthInBytes} bytes) differ.", nameof(destination));
        if (ReferenceEquals(source.Buffer, destination.Buffer) && !source.IsEmpty &&
            source.OffsetInBytes < destination.OffsetInBytes + destination.LengthInBytes &&
            destination.OffsetInBytes < source.OffsetInBytes + source.LengthInBytes)
            throw new ArgumentException($"Source [{source.OffsetInBytes}, +{source.LengthInBytes}) and destination [{destination.OffsetInBytes}, +{destination.LengthInBytes}) overlap in the same buffer.", nameof(destination));
        if (source.IsEmpty) return Record();
        var ev = Begin(new OperationResources(source.Buffer!.Handle, destination.Buffer!.Handle));
        return Submit(ev, e => EnqueueCopyInternal(source, destination, e));
    }

    /// <summary>Enqueues setting every byte of <paramref name="destination"/> to <paramref name="value"/>.</summary>
    /// <param name="destination">Bytes to fill.</param>
    /// <param name="value">The byte value.</param>
    /// <returns>The completion of the fill.</returns>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is default or foreign.</exception>
    /// <exception cref="ObjectDisposedException">This stream, its accelerator or the buffer is disposed.</exception>
    /// <exception cref="AcceleratorException">The backend refused the operation.</exception>
    public DeviceEvent EnqueueFill(DeviceView destination, byte value)
    {
        ThrowIfDisposed();
        ValidateView(destination, nameof(destination));
        if (destination.IsEmpty) return Record();
        var ev = Begin(new OperationResources(destination.Buffer!.Handle, null));
        return Submit(ev, e => EnqueueFillInternal(destination, value, e));
    }

    /// <summary>Enqueues a marker: its event completes when everything enqueued before it on this stream has completed.</summary>
    /// <returns>The marker's completion.</returns>
    /// <exception cref="ObjectDisposedException">This stream or its accelerator is disposed.</exception>
    public DeviceEvent Record()
    {
        ThrowIfDisposed();
        return RecordUnchecked();
    }

    /// <summary>Waits, without blocking a thread, until everything enqueued before this call has completed.</summary>
    /// <param name="cancellationToken">Cancels the wait (queued work continues).</param>
    /// <returns>A task completing when the stream has drained up to this point.</returns>
    /// <exception cref="ObjectDisposedException">This stream or its accelerator is disposed.</exception>
    /// <exception cref="OperationCanceledException">The wait was cancelled.</exception>
    /// <exception cref="AcceleratorException">An operation enqueued since the previous synchronization failed (the first such failure).</exception>
    public ValueTask SynchronizeAsync(CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested) return ValueTask.FromCanceled(cancellationToken);
        var marker = Record();
        if (marker.IsCompleted)
        {
            var error = TakeFirstError();
            return error is null ? ValueTask.CompletedTask : ValueTask.FromException(error);
        }
        return SlowSynchronizeAsync(this, marker, cancellationToken);

        static async ValueTask SlowSynchronizeAsync(AcceleratorStream stream, DeviceEvent marker, CancellationToken cancellationToken)
        {
            try
            {
                await marker.Completion.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception) when (!cancellationToken.IsCancellationRequested)
            {
                // The marker itself failed; the stream's first error (reported below) explains why.
            }
            var error = stream.TakeFirstError();
            if (error is not null) ExceptionDispatchInfo.Throw(error);
        }
    }

    /// <summary>Blocks the calling thread until every operation in flight on this stream has completed. An explicit synchronous API: never call it from async code.</summary>
    /// <exception cref="ObjectDisposedException">This stream or its accelerator is disposed.</exception>
    /// <exception cref="AcceleratorException">An operation enqueued since the previous synchronization failed.</exception>
    public void Synchronize()
    {
        ThrowIfDisposed();
        WaitIdle();
        var error = TakeFirstError();
        if (error is not null) ExceptionDispatchInfo.Throw(error);
    }

    /// <summary>Waits for queued work, then releases the stream. Streams still alive are disposed with their accelerator.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        WaitIdle();
        DisposeInternal();
        Accelerator.Unregister(this);
        GC.SuppressFinalize(this);
    }

    // ---------------------------------------------------------------- backend seam

    /// <summary>Queues a device→host copy of <paramref name="source"/> to <paramref name="hostDestination"/>; must eventually call <see cref="DeviceEvent.Complete"/> exactly once unless it throws.</summary>
    private protected abstract void EnqueueCopyToHostInternal(DeviceView source, nint hostDestination, DeviceEvent completion);

    /// <summary>Queues a host→device copy of <c>destination.LengthInBytes</c> bytes.</summary>
    private protected abstract void EnqueueCopyFromHostInternal(nint hostSource, DeviceView destination, DeviceEvent completion);

    /// <summary>Queues a device→device copy of equal-length, non-overlapping views.</summary>
    private protected abstract void EnqueueCopyInternal(DeviceView source, DeviceView destination, DeviceEvent completion);

    /// <summary>Queues a byte fill.</summary>
    private protected abstract void EnqueueFillInternal(DeviceView destination, byte value, DeviceEvent completion);

    /// <summary>Queues a marker that completes after all prior work.</summary>
    private protected abstract void RecordInternal(DeviceEvent completion);

    /// <summary>Makes sure queued work is submitted (OpenCL <c>clFlush</c>); called before a blocking wait.</summary>
    private protected virtual void FlushInternal() { }

    /// <summary>Releases the backend queue; called once, after the stream is idle.</summary>
    private protected abstract void DisposeInternal();

    // ---------------------------------------------------------------- plumbing

    /// <summary>Backend-specific operations (kernel launches): same bookkeeping as the public enqueues. Takes ownership of <paramref name="resources"/>.</summary>
    internal DeviceEvent EnqueueBackendOperation(OperationResources resources, Action<DeviceEvent> enqueue)
    {
        try
        {
            ThrowIfDisposed();
        }
        catch
        {
            resources.Release();
            throw;
        }
        return Submit(Begin(resources), enqueue);
    }

    internal DeviceEvent RecordUnchecked()
    {
        var ev = Begin(null);
        return Submit(ev, RecordInternal);
    }

    /// <summary>Waits (blocking) until no operation is in flight. Used by <see cref="Synchronize"/> and disposal.</summary>
    internal void WaitIdle()
    {
        try { FlushInternal(); }
        catch (AcceleratorException) { /* the queue is broken; operations complete with errors */ }
        catch (ObjectDisposedException) { }
        lock (_sync)
        {
            while (_pending > 0) Monitor.Wait(_sync);
        }
    }

    internal void OnOperationCompleted(Exception? error)
    {
        lock (_sync)
        {
            if (error is not null) _firstError ??= error;
            if (--_pending == 0) Monitor.PulseAll(_sync);
        }
    }

    private Exception? TakeFirstError()
    {
        lock (_sync)
        {
            var e = _firstError;
            _firstError = null;
            return e;
        }
    }

    private DeviceEvent Begin(OperationResources? resources)
    {
        var ev = new DeviceEvent(this, resources);
        lock (_sync) _pending++;
        return ev;
    }

    private static DeviceEvent Submit(DeviceEvent ev, Action<DeviceEvent> enqueue)
    {
        try
        {
            enqueue(ev);
        }
        catch
        {
            ev.Abandon();
            throw;
        }
        return ev;
    }

    private protected void ThrowIfDisposed()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        ObjectDisposedException.ThrowIf(Accelerator.IsDisposed, Accelerator);
    }

    private void ValidateView(in DeviceView view, string paramName)
    {
        var buffer = view.Buffer;
        if (buffer is null) ThrowHelper.ThrowDefaultView(paramName);
        if (!ReferenceEquals(buffer.Accelerator, Accelerator)) ThrowHelper.ThrowForeignView(paramName, buffer, Accelerator);
        ObjectDisposedException.ThrowIf(buffer.IsDisposed, buffer);
    }

    /// <summary>Marks the stream disposed without waiting (the accelerator already drained it).</summary>
    internal void DisposeFromParent()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        DisposeInternal();
    }
}

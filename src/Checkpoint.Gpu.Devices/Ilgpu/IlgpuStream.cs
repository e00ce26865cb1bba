using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using CheckpointGpu.Devices.Interop;

namespace CheckpointGpu.Devices.Ilgpu;

/// <summary>
/// An ordered stream over one ILGPU <see cref="ILGPU.Runtime.AcceleratorStream"/>, completed by one dedicated thread.
/// </summary>
/// <remarks>
/// <para>Enqueue validates (in the base class), appends a work item and returns. The stream's own thread takes every
/// queued item (up to <see cref="MaxBatch"/>), issues each on the ILGPU stream, then calls the ILGPU stream's
/// <c>Synchronize</c> once and completes the batch's events in order. On CUDA the copies of a batch are queued
/// together (asynchronous DMA from page-locked memory) and the thread sleeps in <c>cuStreamSynchronize</c>; on
/// ILGPU's CPU accelerator the operations run on this thread.</para>
/// <para>Why a dedicated thread: ILGPU 1.5.3 has no host callbacks or awaitable events, and its
/// <c>SynchronizeAsync</c> is <c>Task.Run</c> of a blocking synchronize (STYLE A3.7), which would park a pool thread
/// per wait. One thread per stream, parked only while its stream has work in flight or waits for work, keeps every
/// completion off the thread pool. The thread exits when the stream is disposed.</para>
/// </remarks>
internal sealed unsafe class IlgpuStream : AcceleratorStream
{
    private const int MaxBatch = 64;
    private static int s_threadCounter;

    private readonly ILGPU.Runtime.Accelerator _device;
    private readonly ILGPU.Runtime.AcceleratorStream _stream;
    private readonly Queue<WorkItem> _queue = new();
    private readonly Thread _thread;
    private readonly bool _hostMemory;
    private bool _stopping;
    private int _queued; // _queue.Count, readable without the lock (the spin before parking)

    internal IlgpuStream(IlgpuAccelerator accelerator) : base(accelerator)
    {
        _device = accelerator.Device;
        _hostMemory = _device.AcceleratorType == AcceleratorType.CPU;
        _stream = _device.CreateStream();
        _thread = new Thread(Run)
        {
            IsBackground = true,
            Name = $"ilgpu-stream-{Interlocked.Increment(ref s_threadCounter)}",
        };
        _thread.Start();
    }

    private enum WorkKind { CopyToHost, CopyFromHost, Copy, Fill, Marker, Custom }

    private readonly record struct WorkItem(
        WorkKind Kind, ArrayView<byte> Device, ArrayView<byte> Other, nint Host, byte Value,
        Action<ILGPU.Runtime.AcceleratorStream>? Custom, DeviceEvent Completion);

    /// <summary>The ILGPU stream (operations issued on it from outside are not ordered with this stream's queue).</summary>
    internal ILGPU.Runtime.AcceleratorStream Native => _stream;

    private static ArrayView<byte> View(in DeviceView view) =>
        ((SafeIlgpuBufferHandle)view.Buffer!.Handle).RawView.SubView(view.OffsetInBytes, view.LengthInBytes);

    private protected override void EnqueueCopyToHostInternal(DeviceView source, nint hostDestination, DeviceEvent completion) =>
        Post(new WorkItem(WorkKind.CopyToHost, View(source), default, hostDestination, 0, null, completion));

    private protected override void EnqueueCopyFromHostInternal(nint hostSource, DeviceView destination, DeviceEvent completion) =>
        Post(new WorkItem(WorkKind.CopyFromHost, View(destination), default, hostSource, 0, null, completion));

    private protected override void EnqueueCopyInternal(DeviceView source, DeviceView destination, DeviceEvent completion) =>
        Post(new WorkItem(WorkKind.Copy, View(source), View(destination), 0, 0, null, completion));

    private protected override void EnqueueFillInternal(DeviceView destination, byte value, DeviceEvent completion) =>
        Post(new WorkItem(WorkKind.Fill, View(destination), default, 0, value, null, completion));

    private protected override void RecordInternal(DeviceEvent completion) =>
        Post(new WorkItem(WorkKind.Marker, default, default, 0, 0, null, completion));

    /// <summary>Queues an ILGPU operation (a kernel launch) in stream order; <paramref name="issue"/> runs on the stream's thread.</summary>
    internal void EnqueueCustomInternal(Action<ILGPU.Runtime.AcceleratorStream> issue, DeviceEvent completion) =>
        Post(new WorkItem(WorkKind.Custom, default, default, 0, 0, issue, completion));

    private protected override void DisposeInternal()
    {
        lock (_queue)
        {
            _stopping = true;
            Monitor.PulseAll(_queue);
        }
        if (Thread.CurrentThread != _thread) _thread.Join();
        try { _stream.Dispose(); }
        catch (Exception ex) when (ex is ILGPU.Runtime.AcceleratorException or InvalidOperationException or ObjectDisposedException)
        {
            // The ILGPU accelerator already released its streams.
        }
    }

    /// <summary>
    /// Copies and fills up to this size on ILGPU's CPU accelerator run on the caller's thread when the stream is idle
    /// (nothing queued, nothing running): the two thread wake-ups of a hand-off (~70 µs here, measured at 1 MiB: 111 µs
    /// vs memcpy 41 µs) would otherwise dominate. Larger items keep the stream's thread, so they overlap with the caller.
    /// </summary>
    private const long InlineMaxBytes = 2 << 20;

    private bool _busy; // guarded by _queue: an item is being issued (by the stream's thread or inline by a caller)

    private void Post(in WorkItem item)
    {
        if (_hostMemory && item.Kind is WorkKind.CopyToHost or WorkKind.CopyFromHost or WorkKind.Copy or WorkKind.Fill
            && item.Device.LengthInBytes <= InlineMaxBytes && TryIssueInline(item))
            return;
        lock (_queue)
        {
            ObjectDisposedException.ThrowIf(_stopping, this);
            _queue.Enqueue(item);
            Volatile.Write(ref _queued, _queue.Count);
            if (_queue.Count == 1) Monitor.Pulse(_queue);
        }
    }

    /// <summary>Issues <paramref name="item"/> on the calling thread if the stream is idle, keeping stream order (see <see cref="InlineMaxBytes"/>).</summary>
    private bool TryIssueInline(in WorkItem item)
    {
        lock (_queue)
        {
            ObjectDisposedException.ThrowIf(_stopping, this);
            if (_queue.Count != 0 || _busy) return false;
            _busy = true;
        }
        Exception? error = null;
        try
        {
            IssueOnHost(item);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            error = Wrap(ex, item.Kind.ToString());
        }
        finally
        {
            lock (_queue)
            {
                _busy = false;
                // Items posted meanwhile waited for this one: hand them to the stream's thread.
                if (_queue.Count > 0) Monitor.Pulse(_queue);
            }
        }
        item.Completion.Complete(error);
        return true;
    }

    private void Run()
    {
        var batch = new List<WorkItem>(MaxBatch);
        var errors = new Exception?[MaxBatch];
        // CUDA binds the context per thread; ILGPU's operations bind as well, this makes it hold for the loop.
        using var binding = _device.BindScoped();
        while (true)
        {
            AwaitWorkBriefly();
            lock (_queue)
            {
                while ((_queue.Count == 0 || _busy) && !_stopping) Monitor.Wait(_queue);
                if (_queue.Count == 0) return;
                while (batch.Count < MaxBatch && _queue.TryDequeue(out var next)) batch.Add(next);
                Volatile.Write(ref _queued, _queue.Count);
                _busy = true;
            }
            var needsSync = false;
            for (var i = 0; i < batch.Count; i++)
            {
                errors[i] = null;
                try
                {
                    needsSync |= Issue(batch[i]);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    errors[i] = Wrap(ex, batch[i].Kind.ToString());
                }
            }
            Exception? syncError = null;
            if (needsSync)
            {
                try { _stream.Synchronize(); }
                catch (Exception ex) when (ex is not OutOfMemoryException) { syncError = Wrap(ex, "Synchronize"); }
            }
            lock (_queue) _busy = false;
            for (var i = 0; i < batch.Count; i++) batch[i].Completion.Complete(errors[i] ?? syncError);
            batch.Clear();
        }
    }

    /// <summary>
    /// Before parking on the queue's monitor, spins up to <see cref="SpinBeforeParkTicks"/> for the next item: the
    /// staging ring enqueues its next copy right after the previous one completes, and waking a parked thread (a futex
    /// wake, on a VM often an idle virtual CPU's wake-up too) cost tens of microseconds per copy at 1 MiB.
    /// </summary>
    private void AwaitWorkBriefly()
    {
        var until = System.Diagnostics.Stopwatch.GetTimestamp() + SpinBeforeParkTicks;
        while (Volatile.Read(ref _queued) == 0 && !Volatile.Read(ref _stopping) && System.Diagnostics.Stopwatch.GetTimestamp() < until)
            Thread.SpinWait(20);
    }

    private static readonly long SpinBeforeParkTicks = System.Diagnostics.Stopwatch.Frequency / 20_000; // 50 µs

    /// <summary>Issues one item on the ILGPU stream; returns whether it needs a synchronize to finish.</summary>
    private bool Issue(in WorkItem item)
    {
        if (_hostMemory && IssueOnHost(item)) return false;
        switch (item.Kind)
        {
            case WorkKind.CopyToHost:
                item.Device.CopyToCPUUnsafeAsync(_stream, ref Unsafe.AsRef<byte>((void*)item.Host), item.Device.Length);
                return true;
            case WorkKind.CopyFromHost:
                item.Device.CopyFromCPUUnsafeAsync(_stream, ref Unsafe.AsRef<byte>((void*)item.Host), item.Device.Length);
                return true;
            case WorkKind.Copy:
                item.Device.CopyTo(_stream, item.Other);
                return true;
            case WorkKind.Fill:
                item.Device.MemSet(_stream, item.Value);
                return true;
            case WorkKind.Custom:
                item.Custom!(_stream);
                return true;
            default:
                return false;
        }
    }

    /// <summary>
    /// ILGPU's CPU accelerator: its buffers are host memory, so copies and fills run here, on the stream's thread, as
    /// a <c>memmove</c>/<c>memset</c> of the buffer's native address (copies of 8 MiB and more split over every core by
    /// <see cref="HostMemory.Copy"/>, as the native CPU backend does). ILGPU's own copy path costs ~100–190 µs per call
    /// on top (measured at 1 MiB, Devices RESULTS); the bytes moved are the same. Ordering is unchanged: this thread
    /// issues the stream's items one after another, and a kernel launched on the CPU accelerator (a custom item) has
    /// finished when its launch returns (<c>CPUAccelerator.Launch</c> waits for every processor), so a copy after a
    /// kernel sees its writes and a kernel after a copy sees the copied bytes.
    /// </summary>
    /// <returns>True when the item was done here; false for items that go through ILGPU (kernels, markers).</returns>
    private static bool IssueOnHost(in WorkItem item)
    {
        switch (item.Kind)
        {
            case WorkKind.CopyToHost:
                HostMemory.Copy(Address(item.Device), (void*)item.Host, item.Device.LengthInBytes);
                return true;
            case WorkKind.CopyFromHost:
                HostMemory.Copy((void*)item.Host, Address(item.Device), item.Device.LengthInBytes);
                return true;
            case WorkKind.Copy:
                HostMemory.Copy(Address(item.Device), Address(item.Other), item.Device.LengthInBytes);
                return true;
            case WorkKind.Fill:
                NativeMemory.Fill(Address(item.Device), (nuint)item.Device.LengthInBytes, item.Value);
                return true;
            default:
                return false;
        }
    }

    /// <summary>The host address of a CPU-accelerator view (its buffer's native pointer plus the view's offset).</summary>
    private static void* Address(in ArrayView<byte> view) => view.LengthInBytes == 0 ? null : Unsafe.AsPointer(ref view.LoadEffectiveAddress());

    private Exception Wrap(Exception ex, string call) =>
        ex is AcceleratorException ? ex : new IlgpuException(Accelerator.Kind, call, ex);
}

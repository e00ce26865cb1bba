using System.Runtime.InteropServices;
using CheckpointGpu.Devices.Interop;

namespace CheckpointGpu.Devices.OpenCL;

/// <summary>
/// An in-order OpenCL command queue. Each operation is a non-blocking <c>clEnqueue…</c> that produces a <c>cl_event</c>;
/// a <c>clSetEventCallback(CL_COMPLETE)</c> callback (an <see cref="UnmanagedCallersOnlyAttribute"/> static with a
/// <see cref="GCHandle"/> to its state) hands completion to the thread pool, which releases the event and completes
/// the <see cref="DeviceEvent"/>. <c>clFlush</c> after every enqueue makes the device start the work.
/// </summary>
internal sealed unsafe class OpenCLStream : AcceleratorStream
{
    private readonly SafeClCommandQueueHandle _queue;

    // Held around "clEnqueue… + Track" so that _inFlight lists commands in queue order.
    private readonly object _enqueueLock = new();

    // Commands in queue order awaiting completion. Callbacks may be delivered, and thread-pool items run, in any
    // order; completing strictly from the head keeps the stream contract "event k completes after events < k".
    private readonly Queue<CallbackState> _inFlight = new();
    private bool _draining;

    internal OpenCLStream(OpenCLAccelerator accelerator, SafeClCommandQueueHandle queue) : base(accelerator)
    {
        _queue = queue;
    }

    internal SafeClCommandQueueHandle Queue => _queue;

    private static SafeClMemHandle Mem(in DeviceView view) => (SafeClMemHandle)view.Buffer!.Handle;

    private protected override void EnqueueCopyToHostInternal(DeviceView source, nint hostDestination, DeviceEvent completion)
    {
        lock (_enqueueLock)
        {
            nint evt;
            OpenCLNative.Check(OpenCLNative.clEnqueueReadBuffer(_queue, Mem(source), 0, (nuint)source.OffsetInBytes, (nuint)source.LengthInBytes,
                (void*)hostDestination, 0, null, &evt), "clEnqueueReadBuffer");
            Track(evt, completion, "clEnqueueReadBuffer");
        }
    }

    private protected override void EnqueueCopyFromHostInternal(nint hostSource, DeviceView destination, DeviceEvent completion)
    {
        lock (_enqueueLock)
        {
            nint evt;
            OpenCLNative.Check(OpenCLNative.clEnqueueWriteBuffer(_queue, Mem(destination), 0, (nuint)destination.OffsetInBytes, (nuint)destination.LengthInBytes,
                (void*)hostSource, 0, null, &evt), "clEnqueueWriteBuffer");
            Track(evt, completion, "clEnqueueWriteBuffer");
        }
    }

    private protected override void EnqueueCopyInternal(DeviceView source, DeviceView destination, DeviceEvent completion)
    {
        lock (_enqueueLock)
        {
            nint evt;
            OpenCLNative.Check(OpenCLNative.clEnqueueCopyBuffer(_queue, Mem(source), Mem(destination), (nuint)source.OffsetInBytes,
                (nuint)destination.OffsetInBytes, (nuint)source.LengthInBytes, 0, null, &evt), "clEnqueueCopyBuffer");
            Track(evt, completion, "clEnqueueCopyBuffer");
        }
    }

    private protected override void EnqueueFillInternal(DeviceView destination, byte value, DeviceEvent completion)
    {
        lock (_enqueueLock)
        {
            nint evt;
            OpenCLNative.Check(OpenCLNative.clEnqueueFillBuffer(_queue, Mem(destination), &value, 1, (nuint)destination.OffsetInBytes,
                (nuint)destination.LengthInBytes, 0, null, &evt), "clEnqueueFillBuffer");
            Track(evt, completion, "clEnqueueFillBuffer");
        }
    }

    private protected override void RecordInternal(DeviceEvent completion)
    {
        lock (_enqueueLock)
        {
            nint evt;
            OpenCLNative.Check(OpenCLNative.clEnqueueMarkerWithWaitList(_queue, 0, null, &evt), "clEnqueueMarkerWithWaitList");
            Track(evt, completion, "clEnqueueMarkerWithWaitList");
        }
    }

    internal void EnqueueKernel(OpenCLKernel kernel, KernelRange range, KernelArgument[] arguments, DeviceEvent completion)
    {
        var global = stackalloc nuint[2] { (nuint)range.GlobalX, (nuint)Math.Max(1, range.GlobalY) };
        // Lock order: stream enqueue lock, then kernel lock (the kernel lock is never held while taking a stream lock).
        lock (_enqueueLock)
        {
            nint evt;
            lock (kernel.LaunchLock)
            {
                for (var i = 0; i < arguments.Length; i++)
                {
                    var argument = arguments[i];
                    int status;
                    if (argument.Buffer is not null)
                    {
                        var mem = argument.Buffer.Handle.DangerousGetHandle(); // referenced by the operation's resources
                        status = OpenCLNative.clSetKernelArg(kernel.Handle, (uint)i, (nuint)sizeof(nint), &mem);
                    }
                    else
                    {
                        var bits = argument.Bits; // little-endian: the low bytes hold the scalar
                        status = OpenCLNative.clSetKernelArg(kernel.Handle, (uint)i, (nuint)argument.SizeInBytes, &bits);
                    }
                    OpenCLNative.Check(status, "clSetKernelArg", $"argument {i} of kernel '{kernel.KernelName}'");
                }
                OpenCLNative.Check(OpenCLNative.clEnqueueNDRangeKernel(_queue, kernel.Handle, (uint)range.Dimensions, null, global, null, 0, null, &evt),
                    "clEnqueueNDRangeKernel", $"kernel '{kernel.KernelName}', global size {range.GlobalX} x {Math.Max(1, range.GlobalY)}");
            }
            Track(evt, completion, "clEnqueueNDRangeKernel");
        }
    }

    private protected override void FlushInternal() => OpenCLNative.Check(OpenCLNative.clFlush(_queue), "clFlush");

    private protected override void DisposeInternal() => _queue.Dispose();

    /// <summary>
    /// Takes ownership of <paramref name="evt"/> and arranges for <paramref name="completion"/> to complete with it,
    /// after every earlier command of this stream. Caller holds <see cref="_enqueueLock"/>. Never throws once the
    /// command is enqueued: throwing would release the operation's memory while the device may still use it.
    /// </summary>
    private void Track(nint evt, DeviceEvent completion, string call)
    {
        var state = new CallbackState(this, new SafeClEventHandle(evt, null), completion, call);
        lock (_inFlight) _inFlight.Enqueue(state);
        var gcHandle = GCHandle.Alloc(state);
        var status = OpenCLNative.clSetEventCallback(evt, OpenCLNative.CL_COMPLETE, &OnEventComplete, GCHandle.ToIntPtr(gcHandle));
        if (status != OpenCLErrors.Success)
        {
            // No callback: fall back to waiting here (documented slow path; never seen on PoCL).
            gcHandle.Free();
            var wait = OpenCLNative.clWaitForEvents(1, &evt);
            state.Status = wait;
            Signal(state);
            return;
        }
        // Submit now so work starts; a failing flush shows up as the command's own error status.
        _ = OpenCLNative.clFlush(_queue);
    }

    [UnmanagedCallersOnly]
    private static void OnEventComplete(nint evt, int status, nint userData)
    {
        // Runs on a driver thread: do the minimum and never let an exception cross into native code.
        // Releasing the event and completing continuations happen on the thread pool.
        try
        {
            var gcHandle = GCHandle.FromIntPtr(userData);
            var state = (CallbackState)gcHandle.Target!;
            gcHandle.Free();
            state.Status = status;
            ThreadPool.UnsafeQueueUserWorkItem(state, preferLocal: false);
        }
        catch (InvalidOperationException)
        {
        }
        catch (NotSupportedException)
        {
        }
    }

    /// <summary>
    /// Marks <paramref name="state"/> done and, unless another thread is already draining, completes finished
    /// commands from the head of <see cref="_inFlight"/> in order. The flag and the Signaled bit are both changed
    /// under the lock, so a signal is never lost between a drainer's last check and its exit.
    /// </summary>
    private void Signal(CallbackState state)
    {
        lock (_inFlight)
        {
            state.Signaled = true;
            if (_draining) return;
            _draining = true;
        }
        while (true)
        {
            CallbackState head;
            lock (_inFlight)
            {
                if (!_inFlight.TryPeek(out head!) || !head.Signaled)
                {
                    _draining = false;
                    return;
                }
                _inFlight.Dequeue();
            }
            head.Finish();
        }
    }

    private sealed class CallbackState(OpenCLStream stream, SafeClEventHandle evt, DeviceEvent completion, string call) : IThreadPoolWorkItem
    {
        internal int Status;
        internal bool Signaled;

        void IThreadPoolWorkItem.Execute() => stream.Signal(this);

        internal void Finish()
        {
            evt.Dispose();
            var status = Status;
            completion.Complete(status < 0 ? new OpenCLException(status, call, "the command terminated abnormally.") : null);
        }
    }
}

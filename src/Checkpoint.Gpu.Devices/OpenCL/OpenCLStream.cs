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

    internal OpenCLStream(OpenCLAccelerator accelerator, SafeClCommandQueueHandle queue) : base(accelerator)
    {
        _queue = queue;
    }

    internal SafeClCommandQueueHandle Queue => _queue;

    private static SafeClMemHandle Mem(in DeviceView view) => (SafeClMemHandle)view.Buffer!.Handle;

    private protected override void EnqueueCopyToHostInternal(DeviceView source, nint hostDestination, DeviceEvent completion)
    {
        nint evt;
        OpenCLNative.Check(OpenCLNative.clEnqueueReadBuffer(_queue, Mem(source), 0, (nuint)source.OffsetInBytes, (nuint)source.LengthInBytes,
            (void*)hostDestination, 0, null, &evt), "clEnqueueReadBuffer");
        Track(evt, completion, "clEnqueueReadBuffer");
    }

    private protected override void EnqueueCopyFromHostInternal(nint hostSource, DeviceView destination, DeviceEvent completion)
    {
        nint evt;
        OpenCLNative.Check(OpenCLNative.clEnqueueWriteBuffer(_queue, Mem(destination), 0, (nuint)destination.OffsetInBytes, (nuint)destination.LengthInBytes,
            (void*)hostSource, 0, null, &evt), "clEnqueueWriteBuffer");
        Track(evt, completion, "clEnqueueWriteBuffer");
    }

    private protected override void EnqueueCopyInternal(DeviceView source, DeviceView destination, DeviceEvent completion)
    {
        nint evt;
        OpenCLNative.Check(OpenCLNative.clEnqueueCopyBuffer(_queue, Mem(source), Mem(destination), (nuint)source.OffsetInBytes,
            (nuint)destination.OffsetInBytes, (nuint)source.LengthInBytes, 0, null, &evt), "clEnqueueCopyBuffer");
        Track(evt, completion, "clEnqueueCopyBuffer");
    }

    private protected override void EnqueueFillInternal(DeviceView destination, byte value, DeviceEvent completion)
    {
        nint evt;
        OpenCLNative.Check(OpenCLNative.clEnqueueFillBuffer(_queue, Mem(destination), &value, 1, (nuint)destination.OffsetInBytes,
            (nuint)destination.LengthInBytes, 0, null, &evt), "clEnqueueFillBuffer");
        Track(evt, completion, "clEnqueueFillBuffer");
    }

    private protected override void RecordInternal(DeviceEvent completion)
    {
        nint evt;
        OpenCLNative.Check(OpenCLNative.clEnqueueMarkerWithWaitList(_queue, 0, null, &evt), "clEnqueueMarkerWithWaitList");
        Track(evt, completion, "clEnqueueMarkerWithWaitList");
    }

    private protected override void FlushInternal() => OpenCLNative.Check(OpenCLNative.clFlush(_queue), "clFlush");

    private protected override void DisposeInternal() => _queue.Dispose();

    /// <summary>
    /// Takes ownership of <paramref name="evt"/> and arranges for <paramref name="completion"/> to complete with it.
    /// Never throws once the command is enqueued: throwing would release the operation's memory while the
    /// device may still use it.
    /// </summary>
    internal void Track(nint evt, DeviceEvent completion, string call)
    {
        var state = new CallbackState(new SafeClEventHandle(evt, null), completion, call);
        var gcHandle = GCHandle.Alloc(state);
        var status = OpenCLNative.clSetEventCallback(evt, OpenCLNative.CL_COMPLETE, &OnEventComplete, GCHandle.ToIntPtr(gcHandle));
        if (status != OpenCLErrors.Success)
        {
            // No callback: fall back to waiting here (documented slow path; never seen on PoCL).
            gcHandle.Free();
            var wait = OpenCLNative.clWaitForEvents(1, &evt);
            state.Status = wait;
            ((IThreadPoolWorkItem)state).Execute();
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

    private sealed class CallbackState(SafeClEventHandle evt, DeviceEvent completion, string call) : IThreadPoolWorkItem
    {
        internal int Status;

        void IThreadPoolWorkItem.Execute()
        {
            evt.Dispose();
            var status = Status;
            completion.Complete(status < 0 ? new OpenCLException(status, call, "the command terminated abnormally.") : null);
        }
    }
}

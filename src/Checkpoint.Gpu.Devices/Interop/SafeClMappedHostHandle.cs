using System.Runtime.InteropServices;

namespace CheckpointGpu.Devices.Interop;

/// <summary>
/// Pinned host memory from OpenCL: a <c>CL_MEM_ALLOC_HOST_PTR</c> buffer mapped once for reading and writing.
/// The handle value is the usable (4096-aligned) address. Release unmaps on the accelerator's utility queue,
/// waits for the unmap, then releases the buffer and the queue reference.
/// </summary>
internal sealed unsafe class SafeClMappedHostHandle : SafeHandle
{
    private readonly SafeClMemHandle _mem;
    private readonly SafeClCommandQueueHandle _queue;
    private readonly nint _mappedBase;

    internal SafeClMappedHostHandle(SafeClMemHandle mem, SafeClCommandQueueHandle queue, nint mappedBase, nint alignedAddress)
        : base(IntPtr.Zero, ownsHandle: true)
    {
        var added = false;
        queue.DangerousAddRef(ref added);
        _mem = mem;
        _queue = queue;
        _mappedBase = mappedBase;
        SetHandle(alignedAddress);
        Interlocked.Increment(ref NativeObjectCounters.ClMappedHost);
    }

    public override bool IsInvalid => handle == IntPtr.Zero;

    protected override bool ReleaseHandle()
    {
        var queue = _queue.DangerousGetHandle();
        nint evt = 0;
        var status = OpenCLNative.clEnqueueUnmapMemObject(queue, _mem.DangerousGetHandle(), (void*)_mappedBase, 0, null, &evt);
        if (status == OpenCLErrors.Success && evt != 0)
        {
            _ = OpenCLNative.clWaitForEvents(1, &evt);
            _ = OpenCLNative.clReleaseEvent(evt);
        }
        _mem.Dispose();
        _queue.DangerousRelease();
        Interlocked.Decrement(ref NativeObjectCounters.ClMappedHost);
        return status == OpenCLErrors.Success;
    }
}

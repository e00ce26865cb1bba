using System.Runtime.InteropServices;
using CheckpointGpu.Devices.Interop;
using ILGPU;
using ILGPU.Runtime;

namespace CheckpointGpu.Devices.Ilgpu;

/// <summary>Keeps an ILGPU memory buffer for a <see cref="DeviceBuffer"/>; disposes it (when owned) once the last in-flight operation released it.</summary>
/// <remarks>
/// The handle value is the buffer's <c>NativePtr</c> (a CUDA device pointer, an OpenCL <c>cl_mem</c>, or a host
/// address for ILGPU's CPU accelerator). ILGPU buffers hold a raw pointer, not a SafeHandle (STYLE A3.5); this
/// wrapper gives them the reference counting every stream operation relies on (<see cref="OperationResources"/>).
/// A buffer the user brought (<see cref="IlgpuAccelerator.Wrap{T}(MemoryBuffer1D{T, Stride1D.Dense})"/>) is never disposed here.
/// </remarks>
internal sealed class SafeIlgpuBufferHandle : SafeHandle
{
    private readonly MemoryBuffer _buffer;
    private readonly bool _ownsBuffer;

    internal SafeIlgpuBufferHandle(MemoryBuffer buffer, ArrayView<byte> rawView, bool ownsBuffer)
        : base(IntPtr.Zero, ownsHandle: true)
    {
        _buffer = buffer;
        _ownsBuffer = ownsBuffer;
        RawView = rawView;
        SetHandle(buffer.NativePtr);
        Interlocked.Increment(ref NativeObjectCounters.IlgpuBuffers);
    }

    /// <summary>The whole buffer as raw bytes.</summary>
    internal ArrayView<byte> RawView { get; }

    /// <summary>
    /// The host address of the buffer's first byte on ILGPU's CPU accelerator (its raw view's effective address, which is
    /// what ILGPU's own copies use; not necessarily <c>NativePtr</c>). Meaningless for device memory.
    /// </summary>
    internal unsafe nint HostAddress => RawView.LengthInBytes == 0 ? 0 : (nint)System.Runtime.CompilerServices.Unsafe.AsPointer(ref RawView.LoadEffectiveAddress());

    /// <summary>The ILGPU buffer (valid while this handle is not released).</summary>
    internal MemoryBuffer Buffer => _buffer;

    // A zero-length ILGPU buffer may have a null pointer and is still a live object to release.
    public override bool IsInvalid => false;

    protected override bool ReleaseHandle()
    {
        if (_ownsBuffer)
        {
            try { _buffer.Dispose(); }
            catch (Exception ex) when (ex is ILGPU.Runtime.AcceleratorException or InvalidOperationException or ObjectDisposedException)
            {
                // The accelerator is gone or the driver failed to free: nothing left to release (never throw here).
            }
        }
        Interlocked.Decrement(ref NativeObjectCounters.IlgpuBuffers);
        return true;
    }
}

/// <summary>Page-locked host memory for an ILGPU accelerator: our 4096-aligned, pre-faulted block, registered with ILGPU (<c>cuMemHostRegister</c> on CUDA, a no-op scope on CPU).</summary>
/// <remarks>Holds a reference on the aligned block; releases the registration first, then the memory.</remarks>
internal sealed class SafeIlgpuPageLockedHandle : SafeHandle
{
    private readonly SafeAlignedMemoryHandle _memory;
    private readonly PageLockScope<byte>? _scope;

    internal SafeIlgpuPageLockedHandle(SafeAlignedMemoryHandle memory, PageLockScope<byte>? scope)
        : base(IntPtr.Zero, ownsHandle: true)
    {
        _memory = memory;
        _scope = scope;
        SetHandle(memory.DangerousGetHandle());
        Interlocked.Increment(ref NativeObjectCounters.IlgpuPageLocks);
    }

    public override bool IsInvalid => handle == IntPtr.Zero;

    protected override bool ReleaseHandle()
    {
        try { _scope?.Dispose(); }
        catch (Exception ex) when (ex is ILGPU.Runtime.AcceleratorException or InvalidOperationException or ObjectDisposedException)
        {
            // Unregistering failed (context gone): the memory is freed below regardless.
        }
        _memory.Dispose();
        Interlocked.Decrement(ref NativeObjectCounters.IlgpuPageLocks);
        return true;
    }
}

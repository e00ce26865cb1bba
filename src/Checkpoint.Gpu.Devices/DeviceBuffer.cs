using System.Runtime.InteropServices;

namespace CheckpointGpu.Devices;

/// <summary>A block of accelerator memory: <see cref="LengthInBytes"/> bytes owned by (or, for external memory, lent to) one <see cref="Devices.Accelerator"/>.</summary>
/// <remarks>
/// <para>Created by <see cref="Accelerator.Allocate(long)"/> or <see cref="Accelerator.WrapExternal(nint, long, bool)"/>.
/// Freshly allocated memory is not zeroed; use <see cref="AcceleratorStream.EnqueueFill(DeviceView, byte)"/>.</para>
/// <para>Lifetime: <see cref="Dispose"/> frees the memory once every stream operation already enqueued on it has
/// completed (each operation holds a reference on the native handle), so disposing a buffer with work in flight
/// is safe. Buffers still alive when the accelerator is disposed are freed by it.</para>
/// <para>Thread-safety: all members are thread-safe. Concurrent stream operations on overlapping ranges of the
/// same buffer are ordered only within one stream.</para>
/// </remarks>
public sealed class DeviceBuffer : IDisposable, IAcceleratorChild
{
    private readonly SafeHandle _handle;
    private int _disposed;

    internal DeviceBuffer(Accelerator accelerator, SafeHandle handle, long lengthInBytes, bool isExternal, bool ownsMemory)
    {
        Accelerator = accelerator;
        _handle = handle;
        LengthInBytes = lengthInBytes;
        IsExternal = isExternal;
        OwnsMemory = ownsMemory;
    }

    /// <summary>The accelerator this buffer belongs to.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>Length of the buffer, in bytes.</summary>
    public long LengthInBytes { get; }

    /// <summary>True when the memory was supplied by the caller through <see cref="Accelerator.WrapExternal(nint, long, bool)"/>.</summary>
    public bool IsExternal { get; }

    /// <summary>True when disposing this buffer releases the memory (always for allocated buffers; for external ones, as requested).</summary>
    public bool OwnsMemory { get; }

    /// <summary>True after <see cref="Dispose"/> (or after the accelerator was disposed).</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    internal SafeHandle Handle => _handle;

    /// <summary>A view of <paramref name="lengthInBytes"/> bytes starting at <paramref name="offsetInBytes"/>.</summary>
    /// <param name="offsetInBytes">Start of the view in bytes, 0 ≤ offset ≤ <see cref="LengthInBytes"/>.</param>
    /// <param name="lengthInBytes">Length of the view in bytes.</param>
    /// <returns>The view.</returns>
    /// <exception cref="ObjectDisposedException">The buffer is disposed.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The range is negative or extends past <see cref="LengthInBytes"/>; the message gives all three sizes.</exception>
    public DeviceView View(long offsetInBytes, long lengthInBytes)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ThrowHelper.ThrowIfRangeInvalid(offsetInBytes, lengthInBytes, LengthInBytes, nameof(offsetInBytes), "buffer");
        return new DeviceView(this, offsetInBytes, lengthInBytes);
    }

    /// <summary>A view of the whole buffer.</summary>
    /// <returns>The view.</returns>
    /// <exception cref="ObjectDisposedException">The buffer is disposed.</exception>
    public DeviceView AsView()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        return new DeviceView(this, 0, LengthInBytes);
    }

    /// <summary>
    /// Hint: the whole buffer is about to be written for the first time (for example a restore into a variable created
    /// just now). On the CPU accelerators (native and ILGPU's), where fresh memory's page faults cost more than reading the same bytes from disk
    /// (0.6–0.75 s per GiB on the reference VM), the memory is faulted in by a background thread ahead of the writes
    /// (<c>madvise(MADV_POPULATE_WRITE)</c>, Linux ≥ 5.14; contents are not changed; buffers under 1 MiB are skipped).
    /// Elsewhere (device memory, external memory, other platforms) it does nothing. Like <c>cudaMemPrefetchAsync</c>, it
    /// never affects results, only when page faults are paid.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The buffer is disposed.</exception>
    public void AdviseWillWrite()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (IsExternal || !IsHostMemory) return;
        Cpu.BackgroundPrefault.Enqueue(_handle, HostAddress, LengthInBytes);
    }

    /// <summary>
    /// Whether this buffer's memory is ordinary host memory that the CPU may read and write directly: the native CPU
    /// accelerator's buffers (allocated or wrapped) and ILGPU's CPU accelerator's. For IO straight into or out of a
    /// buffer on such accelerators (for example an <c>O_DIRECT</c> read into a restore's scratch buffer), saving a host
    /// copy. False for device memory (OpenCL, CUDA) and disposed buffers.
    /// </summary>
    public bool IsHostMemory => !IsDisposed &&
        (Accelerator is Cpu.CpuAccelerator || (Accelerator.Kind == AcceleratorKind.IlgpuCpu && _handle is Ilgpu.SafeIlgpuBufferHandle));

    /// <summary>The host address of byte 0 when <see cref="IsHostMemory"/> (ILGPU's CPU buffers: the raw view's effective address, which its own copies use).</summary>
    private nint HostAddress => _handle is Ilgpu.SafeIlgpuBufferHandle ilgpu ? ilgpu.HostAddress : _handle.DangerousGetHandle();

    /// <summary>
    /// A <see cref="Memory{T}"/> of <paramref name="lengthInBytes"/> bytes of this buffer starting at
    /// <paramref name="offsetInBytes"/>, when its memory is host memory (<see cref="IsHostMemory"/>).
    /// </summary>
    /// <remarks>Accesses through the memory are not ordered with stream operations: the caller makes sure no enqueued
    /// operation touches the range meanwhile (for example by waiting for the stream's last event). Pinning the memory
    /// (as <see cref="System.IO.RandomAccess"/> does) keeps the buffer's memory alive until unpinned.</remarks>
    /// <param name="offsetInBytes">Start, in bytes.</param>
    /// <param name="lengthInBytes">Length, in bytes.</param>
    /// <param name="memory">The memory when the result is true.</param>
    /// <param name="address">The host address of byte <paramref name="offsetInBytes"/> when the result is true (for alignment checks).</param>
    /// <returns>False when the buffer is not host memory.</returns>
    /// <exception cref="ObjectDisposedException">The buffer is disposed.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The range is negative or extends past <see cref="LengthInBytes"/>.</exception>
    public bool TryGetHostMemory(long offsetInBytes, int lengthInBytes, out Memory<byte> memory, out nint address)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ThrowHelper.ThrowIfRangeInvalid(offsetInBytes, lengthInBytes, LengthInBytes, nameof(offsetInBytes), "buffer");
        memory = default;
        address = 0;
        if (!IsHostMemory) return false;
        address = HostAddress + (nint)offsetInBytes;
        memory = new Interop.HostBufferMemoryManager(_handle, address, lengthInBytes).Memory;
        return true;
    }

    /// <summary>The backend's raw handle, for interop with other native code: the memory address (CPU) or the <c>cl_mem</c> (OpenCL).</summary>
    /// <returns>The handle; valid only while the buffer is not disposed, and not retained for the caller.</returns>
    /// <exception cref="ObjectDisposedException">The buffer is disposed.</exception>
    public nint DangerousGetNativeHandle()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        return _handle.DangerousGetHandle();
    }

    /// <summary>Releases the buffer; the memory is freed once operations already enqueued on it have completed.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _handle.Dispose();
        Accelerator.Unregister(this);
    }

    void IAcceleratorChild.DisposeFromParent()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _handle.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => $"DeviceBuffer({LengthInBytes} bytes on {Accelerator.Kind})";
}

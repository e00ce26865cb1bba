using System.Buffers;
using System.Runtime.InteropServices;

namespace CheckpointGpu.Devices;

/// <summary>Host memory for fast transfers: 4096-byte aligned, pre-faulted, and page-locked where the backend and limits allow.</summary>
/// <remarks>
/// <para>Created by <see cref="Accelerator.AllocatePinned(long)"/>. The CPU backend uses
/// <see cref="NativeMemory.AlignedAlloc(nuint, nuint)"/> plus <c>mlock</c> (which succeeds only within
/// <c>RLIMIT_MEMLOCK</c>; see <see cref="IsPageLocked"/>); the OpenCL backend maps a <c>CL_MEM_ALLOC_HOST_PTR</c>
/// buffer, which GPU drivers back with page-locked memory (on PoCL it is ordinary memory).</para>
/// <para>Because the start is 4096-byte aligned, slices whose offset and length are multiples of 4096 can be
/// passed to <see cref="RandomAccess"/> on a handle opened for <c>O_DIRECT</c>.</para>
/// <para>It is a <see cref="MemoryManager{T}"/>: <see cref="GetMemory(long, int)"/> slices feed
/// <see cref="RandomAccess.ReadAsync(Microsoft.Win32.SafeHandles.SafeFileHandle, Memory{byte}, long, CancellationToken)"/>
/// directly. Pins (<see cref="Pin(int)"/>) and in-flight stream operations keep the memory alive after
/// <see cref="Dispose()"/> until they are released; spans obtained earlier must not be used after disposal.</para>
/// <para>Thread-safety: members are thread-safe; the bytes themselves are not synchronized.</para>
/// </remarks>
public sealed class PinnedHostBuffer : MemoryManager<byte>, IAcceleratorChild
{
    /// <summary>Alignment of <see cref="Pointer"/>, in bytes.</summary>
    public const int AlignmentInBytes = 4096;

    private readonly SafeHandle _handle;
    private readonly nint _pointer;
    private int _disposed;

    internal PinnedHostBuffer(Accelerator accelerator, SafeHandle handle, nint pointer, long lengthInBytes, bool isPageLocked)
    {
        Accelerator = accelerator;
        _handle = handle;
        _pointer = pointer;
        LengthInBytes = lengthInBytes;
        IsPageLocked = isPageLocked;
    }

    /// <summary>The accelerator that allocated this buffer (any stream of any accelerator may still use it as host memory).</summary>
    public Accelerator Accelerator { get; }

    /// <summary>Length in bytes.</summary>
    public long LengthInBytes { get; }

    /// <summary>True when the memory is known to be page-locked (CPU: <c>mlock</c> succeeded; OpenCL: mapped from <c>CL_MEM_ALLOC_HOST_PTR</c>).</summary>
    public bool IsPageLocked { get; }

    /// <summary>True after <see cref="Dispose()"/>.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>Start address, aligned to <see cref="AlignmentInBytes"/>; valid until disposal.</summary>
    /// <exception cref="ObjectDisposedException">The buffer is disposed.</exception>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1720", Justification = "Contractual name: the raw start address for interop and O_DIRECT IO.")]
    public nint Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            return _pointer;
        }
    }

    internal nint UnsafePointer => _pointer;

    internal SafeHandle Handle => _handle;

    /// <summary>The whole buffer as a span.</summary>
    /// <returns>The span.</returns>
    /// <exception cref="ObjectDisposedException">The buffer is disposed.</exception>
    /// <exception cref="InvalidOperationException">The buffer is longer than <see cref="int.MaxValue"/> bytes; use <see cref="GetSpan(long, int)"/>.</exception>
    public override Span<byte> GetSpan()
    {
        if (LengthInBytes > int.MaxValue)
            throw new InvalidOperationException($"The buffer is {LengthInBytes} bytes long, more than a span can hold; use GetSpan(offset, length).");
        return GetSpan(0, (int)LengthInBytes);
    }

    /// <summary>A span over <paramref name="lengthInBytes"/> bytes at <paramref name="offsetInBytes"/>.</summary>
    /// <param name="offsetInBytes">Start, in bytes.</param>
    /// <param name="lengthInBytes">Length, in bytes.</param>
    /// <returns>The span; do not use it after disposal.</returns>
    /// <exception cref="ObjectDisposedException">The buffer is disposed.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The range does not fit in the buffer.</exception>
    public unsafe Span<byte> GetSpan(long offsetInBytes, int lengthInBytes)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ThrowHelper.ThrowIfRangeInvalid(offsetInBytes, lengthInBytes, LengthInBytes, nameof(offsetInBytes), "pinned host buffer");
        return new Span<byte>((byte*)_pointer + offsetInBytes, lengthInBytes);
    }

    /// <summary>A <see cref="Memory{T}"/> over <paramref name="lengthInBytes"/> bytes at <paramref name="offsetInBytes"/> (for <see cref="RandomAccess"/>).</summary>
    /// <param name="offsetInBytes">Start, in bytes (may exceed <see cref="int.MaxValue"/>).</param>
    /// <param name="lengthInBytes">Length, in bytes.</param>
    /// <returns>The memory; pinning it keeps this buffer's memory alive.</returns>
    /// <exception cref="ObjectDisposedException">The buffer is disposed.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The range does not fit in the buffer.</exception>
    public Memory<byte> GetMemory(long offsetInBytes, int lengthInBytes)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ThrowHelper.ThrowIfRangeInvalid(offsetInBytes, lengthInBytes, LengthInBytes, nameof(offsetInBytes), "pinned host buffer");
        // A Memory built on this manager reads GetSpan() of the whole buffer, which cannot exist past 2 GiB:
        // such buffers always hand out slices with a manager of their own.
        return LengthInBytes <= int.MaxValue
            ? CreateMemory((int)offsetInBytes, lengthInBytes)
            : new Slice(this, offsetInBytes, lengthInBytes).Memory;
    }

    /// <summary>Pins the buffer (it already is): returns a handle that keeps the memory alive until disposed.</summary>
    /// <param name="elementIndex">Byte offset of the returned pointer.</param>
    /// <returns>The memory handle.</returns>
    /// <exception cref="ObjectDisposedException">The buffer is disposed.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="elementIndex"/> is outside the buffer.</exception>
    public override unsafe MemoryHandle Pin(int elementIndex = 0)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, LengthInBytes);
        var added = false;
        _handle.DangerousAddRef(ref added);
        return new MemoryHandle((byte*)_pointer + elementIndex, default, this);
    }

    /// <summary>Releases one <see cref="Pin(int)"/>.</summary>
    public override void Unpin() => _handle.DangerousRelease();

    /// <summary>Releases the buffer; the memory is freed once pins and in-flight stream operations are released.</summary>
    public void Dispose() => ((IDisposable)this).Dispose();

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _handle.Dispose();
        if (disposing) Accelerator.Unregister(this);
    }

    void IAcceleratorChild.DisposeFromParent()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _handle.Dispose();
    }

    /// <summary>A window beyond the 2 GiB that <see cref="MemoryManager{T}.CreateMemory(int, int)"/> can address.</summary>
    private sealed class Slice(PinnedHostBuffer owner, long offsetInBytes, int lengthInBytes) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => owner.GetSpan(offsetInBytes, lengthInBytes);

        public override MemoryHandle Pin(int elementIndex = 0)
        {
            var inner = owner.Pin(0);
            unsafe { return new MemoryHandle((byte*)inner.Pointer + offsetInBytes + elementIndex, default, this); }
        }

        public override void Unpin() => owner.Unpin();

        protected override void Dispose(bool disposing) { }
    }
}

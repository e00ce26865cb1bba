using System.Buffers;
using System.Runtime.InteropServices;

namespace CheckpointGpu.Devices.Interop;

/// <summary>
/// A <see cref="Memory{T}"/> over a range of a device buffer whose memory is host memory (<see cref="DeviceBuffer.TryGetHostMemory"/>).
/// Pinning takes a reference on the buffer's native handle, so the memory outlives a positional read or write in flight
/// even if the buffer is disposed meanwhile (as stream operations do).
/// </summary>
internal sealed unsafe class HostBufferMemoryManager(SafeHandle owner, nint address, int lengthInBytes) : MemoryManager<byte>
{
    public override Span<byte> GetSpan() => new((void*)address, lengthInBytes);

    public override MemoryHandle Pin(int elementIndex = 0)
    {
        var added = false;
        owner.DangerousAddRef(ref added);
        return new MemoryHandle((byte*)address + elementIndex, default, this);
    }

    public override void Unpin() => owner.DangerousRelease();

    protected override void Dispose(bool disposing)
    {
    }
}

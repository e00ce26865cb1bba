using System.Buffers;
using CheckpointGpu.Devices;

namespace CheckpointGpu.Pipeline.Staging;

/// <summary>
/// A <see cref="Memory{T}"/> window of a <see cref="PinnedHostBuffer"/> for <see cref="RandomAccess"/>. Used instead of
/// <see cref="PinnedHostBuffer.GetMemory(long, int)"/> because a window of a buffer larger than 2 GiB (the full-snapshot
/// arena) must not go through the owner's whole-buffer <c>GetSpan()</c>, which refuses buffers over 2 GiB.
/// </summary>
internal sealed unsafe class SlotMemoryManager(PinnedHostBuffer owner, long offsetInBytes, int lengthInBytes) : MemoryManager<byte>
{
    public override Span<byte> GetSpan() => owner.GetSpan(offsetInBytes, lengthInBytes);

    public override MemoryHandle Pin(int elementIndex = 0)
    {
        var inner = owner.Pin(0); // keeps the owner's memory alive until Unpin
        return new MemoryHandle((byte*)inner.Pointer + offsetInBytes + elementIndex, default, this);
    }

    public override void Unpin() => owner.Unpin();

    protected override void Dispose(bool disposing)
    {
    }
}

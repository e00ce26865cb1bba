using System.Diagnostics;
using CheckpointGpu.Devices;

namespace CheckpointGpu.Pipeline.Staging;

/// <summary>
/// A window of pinned host memory that holds one file-aligned chunk of a data file while it moves between the
/// device and the disk. Spans are handed out only while the slot is rented (STYLE B4).
/// </summary>
internal sealed class StagingSlot(PinnedHostBuffer buffer, long baseOffset, int capacityInBytes, int index)
{
    public PinnedHostBuffer Buffer { get; } = buffer;

    /// <summary>Start of the slot in <see cref="Buffer"/>, in bytes (4096-aligned).</summary>
    public long BaseOffset { get; } = baseOffset;

    public int CapacityInBytes { get; } = capacityInBytes;

    /// <summary>Index in the ring, or -1 for an arena window (never returned to a pool).</summary>
    public int Index { get; } = index;

    public SlotState State { get; private set; }

    public Span<byte> GetSpan(int offsetInSlot, int lengthInBytes) => Buffer.GetSpan(BaseOffset + offsetInSlot, lengthInBytes);

    public Memory<byte> GetMemory(int offsetInSlot, int lengthInBytes) => new SlotMemoryManager(Buffer, BaseOffset + offsetInSlot, lengthInBytes).Memory;

    /// <summary>Moves to <paramref name="next"/>; DEBUG-checks that the transition is one of the allowed ones.</summary>
    public void Transition(SlotState next)
    {
        Debug.Assert(
            (State, next) is (SlotState.Free, SlotState.Filling) or (SlotState.Filling, SlotState.Writing) or (SlotState.Writing, SlotState.Free)
                or (_, SlotState.Free),
            $"Illegal slot transition {State} -> {next} (slot {Index}).");
        State = next;
    }
}

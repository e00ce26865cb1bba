namespace CheckpointGpu.Pipeline;

/// <summary>A stage of one staged chunk's way from the device to the disk (see <see cref="SaveTraceEvent"/>).</summary>
public enum SaveTraceStage
{
    /// <summary>Device-to-host copy into the slot: from the copy engine's enqueue until a writer found the bytes staged.</summary>
    DeviceCopy,

    /// <summary>CRC32C of the chunk's pieces on the writer's thread.</summary>
    Checksum,

    /// <summary>The positional write of the slot to its data file.</summary>
    Write,
}

/// <summary>
/// One timed stage of a save, reported to <see cref="CheckpointPipelineOptions.SaveTrace"/>: which staging-ring slot
/// (<see cref="Slot"/>; for <see cref="SnapshotPolicy.FullHostSnapshot"/>, arena windows are -1) and which writer
/// (<see cref="Writer"/>, -1 for the copy engine's stage) handled which bytes of which shard, and when.
/// </summary>
/// <param name="Stage">The stage.</param>
/// <param name="Slot">Ring slot index, or -1 for an arena window.</param>
/// <param name="Writer">Writer index in [0, <see cref="CheckpointPipelineOptions.WriterCount"/>), or -1.</param>
/// <param name="Shard">Data shard (file) index.</param>
/// <param name="FileOffset">Offset of the chunk in its data file, in bytes.</param>
/// <param name="LengthInBytes">Bytes of tensor data in the chunk.</param>
/// <param name="StartTimestamp">Start, in <see cref="System.Diagnostics.Stopwatch.GetTimestamp"/> ticks.</param>
/// <param name="EndTimestamp">End, in the same ticks.</param>
public readonly record struct SaveTraceEvent(SaveTraceStage Stage, int Slot, int Writer, int Shard, long FileOffset, int LengthInBytes,
    long StartTimestamp, long EndTimestamp);

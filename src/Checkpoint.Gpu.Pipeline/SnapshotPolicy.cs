namespace CheckpointGpu.Pipeline;

/// <summary>How a save trades host memory for the time the training loop must leave device buffers untouched.</summary>
public enum SnapshotPolicy
{
    /// <summary>
    /// Stream device → ring → disk with memory bounded by the ring (<see cref="CheckpointPipelineOptions.SlotCount"/> ×
    /// <see cref="CheckpointPipelineOptions.SlotSizeInBytes"/>). <see cref="SaveHandle.Snapshotted"/> completes when the
    /// last tensor has entered the ring, i.e. after all but the last ring-full of data is on disk. The default.
    /// </summary>
    BoundedRing = 0,

    /// <summary>
    /// Copy every device tensor into a host arena laid out like the data files (allocated once per pipeline, grown
    /// when a bigger plan arrives, reused), then write from there. <see cref="SaveHandle.Snapshotted"/> completes
    /// after the device→host copies; host memory is about one model size.
    /// </summary>
    FullHostSnapshot = 1,

    /// <summary>
    /// Ring-bounded like <see cref="BoundedRing"/>, for loops that call
    /// <see cref="CheckpointPipeline.WaitUntilStagedAsync(Devices.DeviceBuffer, CancellationToken)"/> before mutating
    /// each variable instead of awaiting <see cref="SaveHandle.Snapshotted"/>. A barrier on a variable that is not
    /// staged yet clones it on the device (a device→device copy on the pipeline's stream, within
    /// <see cref="CheckpointPipelineOptions.CopyOnWriteBudgetInBytes"/>) and returns when the clone is taken; the save
    /// then reads the clone. Over the budget the barrier waits for staging instead.
    /// </summary>
    WriteBarriers = 2,
}

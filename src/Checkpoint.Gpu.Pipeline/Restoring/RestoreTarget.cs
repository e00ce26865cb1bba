using CheckpointGpu.Devices;

namespace CheckpointGpu.Pipeline;

/// <summary>A checkpoint key and the device memory that receives its value.</summary>
/// <param name="Key">The table key.</param>
/// <param name="Destination">Device bytes to fill; its length must equal the entry's size. Must belong to the pipeline's accelerator.</param>
public readonly record struct RestoreTarget(string Key, DeviceView Destination);

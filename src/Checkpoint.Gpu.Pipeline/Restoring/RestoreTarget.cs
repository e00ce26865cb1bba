using CheckpointGpu.Devices;

namespace CheckpointGpu.Pipeline;

/// <summary>A checkpoint key and the device memory that receives its value.</summary>
/// <param name="Key">The table key.</param>
/// <param name="Destination">Device bytes to fill; its length must equal the entry's size. Any accelerator.</param>
/// <param name="Stream">
/// The stream the value's copies are enqueued on (the variable's own stream, so work queued after the restore is ordered
/// after the value); must belong to the destination's accelerator. <see langword="null"/>: the pipeline's restore stream
/// for a destination on the pipeline's accelerator, else the destination accelerator's default stream.
/// </param>
public readonly record struct RestoreTarget(string Key, DeviceView Destination, AcceleratorStream? Stream = null);

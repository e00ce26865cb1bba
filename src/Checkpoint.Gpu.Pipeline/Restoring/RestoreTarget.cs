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
/// <param name="DestinationIsNew">
/// The destination holds no value yet (restore-on-create) and is discarded by the caller if the restore fails: its bytes
/// then stream straight into it as they are read (checksum checked at the end), instead of waiting in the ring's slots
/// or a device scratch buffer until the whole tensor verified. Default
/// <see langword="false"/>: the destination keeps its previous value unless the whole tensor verified.
/// </param>
public readonly record struct RestoreTarget(string Key, DeviceView Destination, AcceleratorStream? Stream = null, bool DestinationIsNew = false);

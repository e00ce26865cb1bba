namespace CheckpointGpu.Devices;

/// <summary>Describes one device that <see cref="Accelerator.Create(AcceleratorKind, int)"/> can open.</summary>
/// <param name="Kind">The backend.</param>
/// <param name="Ordinal">Index of the device within <see cref="Accelerator.Enumerate(AcceleratorKind)"/> for this kind (0-based).</param>
/// <param name="Name">Human-readable device name as reported by the driver.</param>
/// <param name="MemorySizeInBytes">Total device memory in bytes (OpenCL: <c>CL_DEVICE_GLOBAL_MEM_SIZE</c>; CPU: memory available to this process).</param>
/// <param name="MaxAllocationSizeInBytes">Largest single allocation in bytes (OpenCL: <c>CL_DEVICE_MAX_MEM_ALLOC_SIZE</c>).</param>
/// <param name="Vendor">Device vendor as reported by the driver.</param>
/// <param name="DriverVersion">Driver or platform version string.</param>
/// <remarks>Immutable and thread-safe.</remarks>
public sealed record AcceleratorInfo(
    AcceleratorKind Kind,
    int Ordinal,
    string Name,
    long MemorySizeInBytes,
    long MaxAllocationSizeInBytes,
    string Vendor,
    string DriverVersion);

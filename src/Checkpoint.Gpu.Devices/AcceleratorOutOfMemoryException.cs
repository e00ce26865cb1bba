namespace CheckpointGpu.Devices;

/// <summary>An allocation of device or pinned host memory could not be satisfied.</summary>
/// <remarks>
/// Thrown before any native call when the request exceeds <see cref="Accelerator.MaxAllocationSizeInBytes"/>,
/// and after one when the driver reports exhaustion (OpenCL <c>CL_MEM_OBJECT_ALLOCATION_FAILURE</c>,
/// <c>CL_OUT_OF_RESOURCES</c>, <c>CL_OUT_OF_HOST_MEMORY</c>; CUDA <c>CUDA_ERROR_OUT_OF_MEMORY</c>).
/// </remarks>
public sealed class AcceleratorOutOfMemoryException : AcceleratorException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="kind">The backend.</param>
    /// <param name="requestedBytes">The requested size in bytes.</param>
    /// <param name="memorySizeInBytes">The device's total memory in bytes.</param>
    /// <param name="maxAllocationSizeInBytes">The device's largest single allocation in bytes.</param>
    /// <param name="nativeErrorCode">The native status (0 when rejected before any native call).</param>
    /// <param name="nativeErrorName">Its symbolic name.</param>
    /// <param name="failingCall">The native call, or <see langword="null"/>.</param>
    /// <param name="innerException">The underlying exception, if any.</param>
    public AcceleratorOutOfMemoryException(AcceleratorKind kind, long requestedBytes, long memorySizeInBytes, long maxAllocationSizeInBytes,
        int nativeErrorCode = 0, string nativeErrorName = "NONE", string? failingCall = null, Exception? innerException = null)
        : base(kind, FormatMessage(kind, requestedBytes, memorySizeInBytes, maxAllocationSizeInBytes, nativeErrorCode, nativeErrorName, failingCall),
            nativeErrorCode, nativeErrorName, failingCall, innerException)
    {
        RequestedBytes = requestedBytes;
        MemorySizeInBytes = memorySizeInBytes;
        MaxAllocationSizeInBytes = maxAllocationSizeInBytes;
    }

    /// <summary>The size of the failed request, in bytes.</summary>
    public long RequestedBytes { get; }

    /// <summary>The device's total memory, in bytes.</summary>
    public long MemorySizeInBytes { get; }

    /// <summary>The device's largest single allocation, in bytes.</summary>
    public long MaxAllocationSizeInBytes { get; }

    private static string FormatMessage(AcceleratorKind kind, long requested, long memory, long maxAlloc, int code, string name, string? call) =>
        call is null
            ? $"{kind}: cannot allocate {requested} bytes: the device has {memory} bytes of memory and allows at most {maxAlloc} bytes per allocation."
            : $"{kind}: cannot allocate {requested} bytes ({call} failed with {name} ({code})); the device has {memory} bytes of memory and allows at most {maxAlloc} bytes per allocation.";
}

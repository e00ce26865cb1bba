namespace CheckpointGpu.Devices.Ilgpu;

/// <summary>ILGPU reported a failure (a CUDA or OpenCL driver error it wrapped, or a runtime error of its own).</summary>
/// <remarks><see cref="Exception.InnerException"/> is ILGPU's exception; <see cref="AcceleratorException.NativeErrorName"/> carries its error name where ILGPU gives one.</remarks>
public sealed class IlgpuException : AcceleratorException
{
    /// <summary>Creates the exception for ILGPU's <paramref name="innerException"/> raised by <paramref name="failingCall"/>.</summary>
    /// <param name="kind">The backend.</param>
    /// <param name="failingCall">The ILGPU operation, e.g. <c>Allocate1D</c> or <c>CopyToCPUUnsafeAsync</c>.</param>
    /// <param name="innerException">ILGPU's exception.</param>
    public IlgpuException(AcceleratorKind kind, string failingCall, Exception innerException)
        : base(kind, $"{kind}: ILGPU {failingCall} failed: {innerException?.Message}", 0, ErrorName(innerException), failingCall, innerException)
    {
    }

    private static string ErrorName(Exception? inner) => inner switch
    {
        null => "NONE",
        ILGPU.Runtime.Cuda.CudaException cuda => cuda.Error.ToString(),
        ILGPU.Runtime.OpenCL.CLException cl => cl.Error.ToString(),
        _ => inner.GetType().Name,
    };
}

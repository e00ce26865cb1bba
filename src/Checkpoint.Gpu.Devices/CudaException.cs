namespace CheckpointGpu.Devices;

/// <summary>A CUDA driver API call returned an error (<c>CUresult</c>).</summary>
/// <remarks>The CUDA backend is not implemented yet; this type fixes the error contract for it.</remarks>
public sealed class CudaException : AcceleratorException
{
    /// <summary>Creates an exception for <paramref name="errorCode"/> returned by <paramref name="failingCall"/>.</summary>
    /// <param name="errorCode">The <c>CUresult</c> value.</param>
    /// <param name="errorName">Its symbolic name, e.g. <c>CUDA_ERROR_OUT_OF_MEMORY</c>.</param>
    /// <param name="failingCall">The driver API function, e.g. <c>cuMemcpyDtoHAsync</c>.</param>
    public CudaException(int errorCode, string errorName, string failingCall)
        : base(AcceleratorKind.Cuda, $"{failingCall} failed with {errorName} ({errorCode}).", errorCode, errorName, failingCall, null)
    {
    }
}

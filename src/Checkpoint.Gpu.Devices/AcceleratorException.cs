namespace CheckpointGpu.Devices;

/// <summary>Base class for failures reported by an accelerator backend (a native error code, or an allocation that cannot be satisfied).</summary>
/// <remarks>
/// Derived types: <see cref="OpenCLException"/>, <see cref="CudaException"/> and <see cref="AcceleratorOutOfMemoryException"/>.
/// Caller mistakes (bad offsets, foreign views, disposed objects) are reported with the BCL argument and
/// <see cref="ObjectDisposedException"/> types instead.
/// </remarks>
public abstract class AcceleratorException : Exception
{
    /// <summary>Initializes the exception.</summary>
    /// <param name="kind">The backend that failed.</param>
    /// <param name="message">The full message.</param>
    /// <param name="nativeErrorCode">The native status code (0 when the failure was detected before a native call).</param>
    /// <param name="nativeErrorName">The symbolic name of <paramref name="nativeErrorCode"/>, e.g. <c>CL_MEM_OBJECT_ALLOCATION_FAILURE</c>.</param>
    /// <param name="failingCall">The native function that failed, e.g. <c>clCreateBuffer</c>, or <see langword="null"/>.</param>
    /// <param name="innerException">The underlying exception, if any.</param>
    protected AcceleratorException(AcceleratorKind kind, string message, int nativeErrorCode, string nativeErrorName, string? failingCall, Exception? innerException)
        : base(message, innerException)
    {
        Kind = kind;
        NativeErrorCode = nativeErrorCode;
        NativeErrorName = nativeErrorName;
        FailingCall = failingCall;
    }

    /// <summary>The backend that reported the failure.</summary>
    public AcceleratorKind Kind { get; }

    /// <summary>The native status code (for example an OpenCL <c>cl_int</c> or a <c>CUresult</c>); 0 when none applies.</summary>
    public int NativeErrorCode { get; }

    /// <summary>The symbolic name of <see cref="NativeErrorCode"/>, such as <c>CL_INVALID_MEM_OBJECT</c>.</summary>
    public string NativeErrorName { get; }

    /// <summary>The native function that failed (<c>clEnqueueReadBuffer</c>, <c>cuMemAlloc</c>, …), or <see langword="null"/>.</summary>
    public string? FailingCall { get; }
}

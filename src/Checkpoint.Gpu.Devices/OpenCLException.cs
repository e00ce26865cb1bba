using CheckpointGpu.Devices.Interop;

namespace CheckpointGpu.Devices;

/// <summary>An OpenCL call returned an error code.</summary>
/// <remarks>The message names the failing call and the symbolic error; for program builds it includes the build log.</remarks>
public sealed class OpenCLException : AcceleratorException
{
    /// <summary>Creates an exception for <paramref name="errorCode"/> returned by <paramref name="failingCall"/>.</summary>
    /// <param name="errorCode">The OpenCL error code (negative).</param>
    /// <param name="failingCall">The OpenCL function that returned it.</param>
    /// <param name="detail">Optional extra context (sizes, the build log).</param>
    public OpenCLException(int errorCode, string failingCall, string? detail = null)
        : base(AcceleratorKind.OpenCL, FormatMessage(errorCode, failingCall, detail), errorCode, OpenCLErrors.GetName(errorCode), failingCall, null)
    {
    }

    private static string FormatMessage(int errorCode, string failingCall, string? detail) =>
        detail is null
            ? $"{failingCall} failed with {OpenCLErrors.GetName(errorCode)} ({errorCode})."
            : $"{failingCall} failed with {OpenCLErrors.GetName(errorCode)} ({errorCode}): {detail}";
}

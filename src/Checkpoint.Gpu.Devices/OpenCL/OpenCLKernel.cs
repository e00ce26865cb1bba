using CheckpointGpu.Devices.Interop;

namespace CheckpointGpu.Devices.OpenCL;

/// <summary>A compiled kernel of an <see cref="OpenCLAccelerator"/>, launched with <see cref="OpenCLAccelerator.EnqueueKernel"/>.</summary>
/// <remarks>
/// Obtained from <see cref="OpenCLAccelerator.GetKernel(string, string)"/>; owned and released by the accelerator.
/// Thread-safe: argument setting and enqueueing happen under a per-kernel lock, because <c>clSetKernelArg</c>
/// state is shared by all launches of one <c>cl_kernel</c>.
/// </remarks>
public sealed class OpenCLKernel
{
    internal OpenCLKernel(OpenCLAccelerator accelerator, string programName, string kernelName, SafeClKernelHandle handle)
    {
        Accelerator = accelerator;
        ProgramName = programName;
        KernelName = kernelName;
        Handle = handle;
    }

    /// <summary>The accelerator that compiled the kernel.</summary>
    public OpenCLAccelerator Accelerator { get; }

    /// <summary>The program (source file name under <c>native/opencl/</c>, without <c>.cl</c>).</summary>
    public string ProgramName { get; }

    /// <summary>The <c>__kernel</c> function name.</summary>
    public string KernelName { get; }

    internal SafeClKernelHandle Handle { get; }

    internal object LaunchLock { get; } = new();
}

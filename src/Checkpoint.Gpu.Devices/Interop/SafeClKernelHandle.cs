using System.Runtime.InteropServices;

namespace CheckpointGpu.Devices.Interop;

/// <summary>Owns one reference to an OpenCL object, released with <c>clReleaseKernel</c>.</summary>
internal sealed class SafeClKernelHandle : SafeClHandle
{
    /// <summary>Required by the P/Invoke marshaller; not used to create handles.</summary>
    public SafeClKernelHandle()
    {
    }

    /// <summary>Takes ownership of <paramref name="native"/>; keeps <paramref name="parent"/> alive until released.</summary>
    internal SafeClKernelHandle(nint native, SafeHandle? parent)
    {
        Initialize(native, parent);
    }

    private protected override void OnCreated() => Interlocked.Increment(ref NativeObjectCounters.ClKernels);

    private protected override int ReleaseNative(nint native)
    {
        Interlocked.Decrement(ref NativeObjectCounters.ClKernels);
        return OpenCLNative.clReleaseKernel(native);
    }
}

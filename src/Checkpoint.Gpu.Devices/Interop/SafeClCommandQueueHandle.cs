using System.Runtime.InteropServices;

namespace CheckpointGpu.Devices.Interop;

/// <summary>Owns one reference to an OpenCL object, released with <c>clReleaseCommandQueue</c>.</summary>
internal sealed class SafeClCommandQueueHandle : SafeClHandle
{
    /// <summary>Required by the P/Invoke marshaller; not used to create handles.</summary>
    public SafeClCommandQueueHandle()
    {
    }

    /// <summary>Takes ownership of <paramref name="native"/>; keeps <paramref name="parent"/> alive until released.</summary>
    internal SafeClCommandQueueHandle(nint native, SafeHandle? parent)
    {
        Initialize(native, parent);
    }

    private protected override void OnCreated() => Interlocked.Increment(ref NativeObjectCounters.ClCommandQueues);

    private protected override int ReleaseNative(nint native)
    {
        Interlocked.Decrement(ref NativeObjectCounters.ClCommandQueues);
        return OpenCLNative.clReleaseCommandQueue(native);
    }
}

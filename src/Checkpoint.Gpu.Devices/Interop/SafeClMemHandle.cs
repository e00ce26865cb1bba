using System.Runtime.InteropServices;

namespace CheckpointGpu.Devices.Interop;

/// <summary>Owns one reference to an OpenCL object, released with <c>clReleaseMemObject</c>.</summary>
internal sealed class SafeClMemHandle : SafeClHandle
{
    /// <summary>Required by the P/Invoke marshaller; not used to create handles.</summary>
    public SafeClMemHandle()
    {
    }

    /// <summary>Takes ownership of <paramref name="native"/>; keeps <paramref name="parent"/> alive until released.</summary>
    internal SafeClMemHandle(nint native, SafeHandle? parent)
    {
        Initialize(native, parent);
    }

    private protected override void OnCreated() => Interlocked.Increment(ref NativeObjectCounters.ClMems);

    private protected override int ReleaseNative(nint native)
    {
        Interlocked.Decrement(ref NativeObjectCounters.ClMems);
        return OpenCLNative.clReleaseMemObject(native);
    }
}

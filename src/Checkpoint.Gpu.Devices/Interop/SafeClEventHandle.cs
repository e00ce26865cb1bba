using System.Runtime.InteropServices;

namespace CheckpointGpu.Devices.Interop;

/// <summary>Owns one reference to an OpenCL object, released with <c>clReleaseEvent</c>.</summary>
internal sealed class SafeClEventHandle : SafeClHandle
{
    /// <summary>Required by the P/Invoke marshaller; not used to create handles.</summary>
    public SafeClEventHandle()
    {
    }

    /// <summary>Takes ownership of <paramref name="native"/>; keeps <paramref name="parent"/> alive until released.</summary>
    internal SafeClEventHandle(nint native, SafeHandle? parent)
    {
        Initialize(native, parent);
    }

    private protected override void OnCreated() => Interlocked.Increment(ref NativeObjectCounters.ClEvents);

    private protected override int ReleaseNative(nint native)
    {
        Interlocked.Decrement(ref NativeObjectCounters.ClEvents);
        return OpenCLNative.clReleaseEvent(native);
    }
}

using System.Runtime.InteropServices;

namespace CheckpointGpu.Devices.Interop;

/// <summary>Owns one reference to an OpenCL object, released with <c>clReleaseProgram</c>.</summary>
internal sealed class SafeClProgramHandle : SafeClHandle
{
    /// <summary>Required by the P/Invoke marshaller; not used to create handles.</summary>
    public SafeClProgramHandle()
    {
    }

    /// <summary>Takes ownership of <paramref name="native"/>; keeps <paramref name="parent"/> alive until released.</summary>
    internal SafeClProgramHandle(nint native, SafeHandle? parent)
    {
        Initialize(native, parent);
    }

    private protected override void OnCreated() => Interlocked.Increment(ref NativeObjectCounters.ClPrograms);

    private protected override int ReleaseNative(nint native)
    {
        Interlocked.Decrement(ref NativeObjectCounters.ClPrograms);
        return OpenCLNative.clReleaseProgram(native);
    }
}

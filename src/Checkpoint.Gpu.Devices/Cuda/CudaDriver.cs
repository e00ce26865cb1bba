using System.Runtime.InteropServices;

namespace CheckpointGpu.Devices.Cuda;

/// <summary>
/// Probe for the CUDA driver library. The CUDA backend itself is a later issue; this class fixes where it plugs in
/// (see <c>src/Checkpoint.Gpu.Devices/README.md</c>, "CUDA seam"). Nothing here was run against a GPU.
/// </summary>
internal static class CudaDriver
{
    internal const string LibraryName = "libcuda.so.1";

    /// <summary>False until a <c>CudaAccelerator</c> exists; <see cref="Accelerator.IsSupported(AcceleratorKind)"/> reports false meanwhile.</summary>
    internal const bool IsBackendImplemented = false;

    private static readonly Lazy<bool> s_available = new(Probe);

    /// <summary>True when <c>libcuda.so.1</c> can be loaded (it is not on the development machine).</summary>
    internal static bool IsLibraryAvailable => s_available.Value;

    private static bool Probe()
    {
        if (!NativeLibrary.TryLoad(LibraryName, out var handle)) return false;
        NativeLibrary.Free(handle);
        return true;
    }
}

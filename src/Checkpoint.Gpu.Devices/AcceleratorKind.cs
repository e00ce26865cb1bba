namespace CheckpointGpu.Devices;

/// <summary>The kind of backend an <see cref="Accelerator"/> runs on.</summary>
/// <remarks>
/// <see cref="Cpu"/> and <see cref="OpenCL"/> are this project's own bindings (CI-tested on the host and on PoCL);
/// <see cref="IlgpuCpu"/>, <see cref="Cuda"/> and <see cref="IlgpuOpenCL"/> run through ILGPU 1.5.3
/// (<see cref="Ilgpu.IlgpuAccelerator"/>).
/// </remarks>
public enum AcceleratorKind
{
    /// <summary>The host CPU: native aligned memory and thread-pool driven streams. Always available.</summary>
    Cpu = 0,

    /// <summary>An OpenCL device reached through the system ICD loader (<c>libOpenCL.so.1</c>) by this project's own binding. Tested on PoCL only.</summary>
    OpenCL = 1,

    /// <summary>An NVIDIA GPU through ILGPU's CUDA accelerator (<c>libcuda.so.1</c>); supported exactly when ILGPU finds a CUDA device. Never run here (no GPU).</summary>
    Cuda = 2,

    /// <summary>ILGPU's CPU accelerator (device memory is ILGPU CPU memory; kernels run on ILGPU's CPU runtime). Always available.</summary>
    IlgpuCpu = 3,

    /// <summary>An OpenCL 2.0+ device through ILGPU's OpenCL accelerator. ILGPU requires the generic address space, so it refuses PoCL's CPU device.</summary>
    IlgpuOpenCL = 4,
}

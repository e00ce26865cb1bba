namespace CheckpointGpu.Devices;

/// <summary>The kind of backend an <see cref="Accelerator"/> runs on.</summary>
public enum AcceleratorKind
{
    /// <summary>The host CPU: native aligned memory and thread-pool driven streams. Always available.</summary>
    Cpu = 0,

    /// <summary>An OpenCL device reached through the system ICD loader (<c>libOpenCL.so.1</c>). Tested on PoCL only.</summary>
    OpenCL = 1,

    /// <summary>An NVIDIA GPU through the CUDA driver API (<c>libcuda.so.1</c>). The backend is not implemented yet.</summary>
    Cuda = 2,
}

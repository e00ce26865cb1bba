using CheckpointGpu.Devices;

namespace CheckpointGpu.Benchmarks;

/// <summary>The <c>--device</c> names shared with <c>ckpt</c>: cpu, opencl, ilgpu-cpu, cuda, ilgpu-opencl.</summary>
public static class DeviceKinds
{
    /// <summary>Maps a device name to its kind; throws for unknown names and names an unsupported kind's reason.</summary>
    public static AcceleratorKind Parse(string device)
    {
        var kind = device.ToLowerInvariant() switch
        {
            "cpu" => AcceleratorKind.Cpu,
            "opencl" => AcceleratorKind.OpenCL,
            "ilgpu-cpu" => AcceleratorKind.IlgpuCpu,
            "cuda" => AcceleratorKind.Cuda,
            "ilgpu-opencl" => AcceleratorKind.IlgpuOpenCL,
            _ => throw new ArgumentException($"unknown --device '{device}'; use cpu, opencl, ilgpu-cpu, cuda or ilgpu-opencl."),
        };
        if (!Accelerator.IsSupported(kind))
            throw new NotSupportedException($"--device {device}: {Accelerator.GetUnsupportedReason(kind)}.");
        return kind;
    }
}

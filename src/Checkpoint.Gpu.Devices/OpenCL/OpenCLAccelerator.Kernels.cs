namespace CheckpointGpu.Devices.OpenCL;

public sealed partial class OpenCLAccelerator
{
    private static void DisposeKernels()
    {
    }
}

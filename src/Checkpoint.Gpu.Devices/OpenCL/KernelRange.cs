namespace CheckpointGpu.Devices.OpenCL;

/// <summary>The global work size of a 1-D or 2-D kernel launch (work-items; the driver picks the work-group size).</summary>
/// <param name="GlobalX">Work-items along dimension 0 (<c>get_global_id(0)</c>), at least 1.</param>
/// <param name="GlobalY">Work-items along dimension 1, or 0 for a 1-D launch.</param>
public readonly record struct KernelRange(long GlobalX, long GlobalY = 0)
{
    /// <summary>Number of dimensions: 1 or 2.</summary>
    public int Dimensions => GlobalY == 0 ? 1 : 2;
}

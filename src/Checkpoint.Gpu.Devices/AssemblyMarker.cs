namespace CheckpointGpu.Devices;

/// <summary>Assembly marker for src/Checkpoint.Gpu.Devices.</summary>
public static class AssemblyMarker
{
}

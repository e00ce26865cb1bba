namespace CheckpointGpu.Format;

/// <summary>Assembly marker for src/Checkpoint.Gpu.Format.</summary>
public static class AssemblyMarker
{
}

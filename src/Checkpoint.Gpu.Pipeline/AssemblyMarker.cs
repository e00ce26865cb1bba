namespace CheckpointGpu.Pipeline;

/// <summary>Assembly marker for src/Checkpoint.Gpu.Pipeline.</summary>
public static class AssemblyMarker
{
}

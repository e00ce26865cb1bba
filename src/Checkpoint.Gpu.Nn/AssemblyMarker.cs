namespace CheckpointGpu.Nn;

/// <summary>Assembly marker for src/Checkpoint.Gpu.Nn.</summary>
public static class AssemblyMarker
{
}

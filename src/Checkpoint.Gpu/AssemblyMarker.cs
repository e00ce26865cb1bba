namespace CheckpointGpu;

/// <summary>Assembly marker for the core library.</summary>
public static class AssemblyMarker
{
}

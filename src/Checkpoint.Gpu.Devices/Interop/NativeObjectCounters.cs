namespace CheckpointGpu.Devices.Interop;

/// <summary>Live native objects owned by this assembly, per kind. Incremented when a handle is created, decremented in <c>ReleaseHandle</c>.</summary>
/// <remarks>Used by the leak tests: after a workload and disposal every counter must be back at its baseline.</remarks>
internal static class NativeObjectCounters
{
    internal static long AlignedMemory;
    internal static long ClContexts;
    internal static long ClCommandQueues;
    internal static long ClMems;
    internal static long ClEvents;
    internal static long ClPrograms;
    internal static long ClKernels;
    internal static long ClMappedHost;
    internal static long IlgpuBuffers;
    internal static long IlgpuPageLocks;

    internal static NativeObjectCountSnapshot Snapshot() => new(
        Interlocked.Read(ref AlignedMemory),
        Interlocked.Read(ref ClContexts),
        Interlocked.Read(ref ClCommandQueues),
        Interlocked.Read(ref ClMems),
        Interlocked.Read(ref ClEvents),
        Interlocked.Read(ref ClPrograms),
        Interlocked.Read(ref ClKernels),
        Interlocked.Read(ref ClMappedHost),
        Interlocked.Read(ref IlgpuBuffers),
        Interlocked.Read(ref IlgpuPageLocks));
}

/// <summary>A point-in-time copy of <see cref="NativeObjectCounters"/>.</summary>
internal readonly record struct NativeObjectCountSnapshot(
    long AlignedMemory, long ClContexts, long ClCommandQueues, long ClMems, long ClEvents, long ClPrograms, long ClKernels, long ClMappedHost,
    long IlgpuBuffers, long IlgpuPageLocks);

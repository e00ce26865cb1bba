using System.Runtime.InteropServices;

namespace CheckpointGpu.Devices.Interop;

/// <summary>
/// Copies between host addresses for the accelerators whose device memory is host memory (the native CPU backend and
/// ILGPU's CPU accelerator): one <c>memmove</c> below <see cref="ParallelThresholdInBytes"/>, above it chunks of
/// <see cref="ChunkInBytes"/> copied on every core. One core does not saturate memory bandwidth on this machine
/// (MACHINE-LIMITS.md), and a long single-threaded copy on a stream delays every copy queued behind it (the restore
/// ring's slot copies wait behind a 256 MiB scratch-to-destination copy).
/// </summary>
internal static unsafe class HostMemory
{
    /// <summary>Copies at least this large are split into chunks copied in parallel (bytes).</summary>
    internal const long ParallelThresholdInBytes = 8L << 20;

    /// <summary>The size of one parallel chunk (bytes).</summary>
    internal const long ChunkInBytes = 2L << 20;

    /// <summary>Copies <paramref name="lengthInBytes"/> bytes; the ranges must not overlap when the copy is split.</summary>
    /// <param name="source">Source address.</param>
    /// <param name="destination">Destination address.</param>
    /// <param name="lengthInBytes">Bytes to copy (≥ 0).</param>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    internal static void Copy(void* source, void* destination, long lengthInBytes)
    {
        if (lengthInBytes < ParallelThresholdInBytes || Environment.ProcessorCount == 1 || Overlap(source, destination, lengthInBytes))
        {
            NativeMemory.Copy(source, destination, (nuint)lengthInBytes);
            return;
        }
        var src = (nint)source;
        var dst = (nint)destination;
        var chunks = (lengthInBytes + ChunkInBytes - 1) / ChunkInBytes;
        Parallel.For(0L, chunks, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, i =>
        {
            var offset = i * ChunkInBytes;
            var length = Math.Min(ChunkInBytes, lengthInBytes - offset);
            NativeMemory.Copy((byte*)src + offset, (byte*)dst + offset, (nuint)length);
        });
    }

    private static bool Overlap(void* a, void* b, long length)
    {
        var x = (byte*)a;
        var y = (byte*)b;
        return x < y + length && y < x + length;
    }
}

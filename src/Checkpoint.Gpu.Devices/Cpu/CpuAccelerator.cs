using CheckpointGpu.Devices.Interop;

namespace CheckpointGpu.Devices.Cpu;

/// <summary>The host CPU as an accelerator: device memory is native 4096-byte-aligned memory; streams are asynchronous queues drained on the thread pool.</summary>
/// <remarks>
/// Always available and the default backend. <see cref="Accelerator.MemorySizeInBytes"/> is the memory available to
/// the process (<see cref="GCMemoryInfo.TotalAvailableMemoryBytes"/>, which honours container limits).
/// Thread-safe.
/// </remarks>
public sealed class CpuAccelerator : Accelerator
{
    internal CpuAccelerator() : base(Describe())
    {
    }

    private protected override bool DeviceMemoryIsHostMemoryCore => true;

    internal static AcceleratorInfo Describe()
    {
        var memory = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        return new AcceleratorInfo(AcceleratorKind.Cpu, 0, $"{ReadCpuModel()} ({Environment.ProcessorCount} logical processors)",
            memory, memory, "host", Environment.Version.ToString());
    }

    private protected override DeviceBuffer AllocateInternal(long lengthInBytes)
    {
        var handle = SafeAlignedMemoryHandle.TryAllocate(lengthInBytes, PinnedHostBuffer.AlignmentInBytes, pageLockAndPrefault: false)
            ?? throw new AcceleratorOutOfMemoryException(Kind, lengthInBytes, MemorySizeInBytes, MaxAllocationSizeInBytes, 12, "ENOMEM", "aligned_alloc");
        return new DeviceBuffer(this, handle, lengthInBytes, isExternal: false, ownsMemory: true);
    }

    private protected override DeviceBuffer WrapExternalInternal(nint nativeHandle, long lengthInBytes, bool ownsMemory) =>
        new(this, SafeAlignedMemoryHandle.Wrap(nativeHandle, lengthInBytes, ownsMemory), lengthInBytes, isExternal: true, ownsMemory);

    private protected override PinnedHostBuffer AllocatePinnedInternal(long lengthInBytes)
    {
        var handle = SafeAlignedMemoryHandle.TryAllocate(lengthInBytes, PinnedHostBuffer.AlignmentInBytes, pageLockAndPrefault: true)
            ?? throw new AcceleratorOutOfMemoryException(Kind, lengthInBytes, MemorySizeInBytes, MaxAllocationSizeInBytes, 12, "ENOMEM", "aligned_alloc");
        return new PinnedHostBuffer(this, handle, handle.DangerousGetHandle(), lengthInBytes, handle.IsPageLocked);
    }

    private protected override AcceleratorStream CreateStreamInternal() => new CpuStream(this);

    private protected override void DisposeInternal()
    {
        // No device context on the host.
    }

    private static string ReadCpuModel()
    {
        try
        {
            if (File.Exists("/proc/cpuinfo"))
            {
                foreach (var line in File.ReadLines("/proc/cpuinfo"))
                {
                    if (line.StartsWith("model name", StringComparison.Ordinal))
                    {
                        var colon = line.IndexOf(':', StringComparison.Ordinal);
                        if (colon > 0) return line[(colon + 1)..].Trim();
                    }
                }
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return "CPU";
    }
}

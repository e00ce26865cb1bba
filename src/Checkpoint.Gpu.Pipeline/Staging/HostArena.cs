using CheckpointGpu.Format;
using CheckpointGpu.Devices;

namespace CheckpointGpu.Pipeline.Staging;

/// <summary>
/// The host snapshot arena of <see cref="SnapshotPolicy.FullHostSnapshot"/>: pinned memory laid out like the data
/// files (each shard at a 4096-aligned base), so device copies land at their file offsets and writers send
/// aligned windows straight to <c>O_DIRECT</c> files. Allocated on first use, grown when a larger plan arrives,
/// pre-faulted, and kept for later saves.
/// </summary>
internal sealed class HostArena : IDisposable
{
    private readonly Accelerator _accelerator;
    private PinnedHostBuffer? _buffer;

    public HostArena(Accelerator accelerator) => _accelerator = accelerator;

    public long LengthInBytes => _buffer?.LengthInBytes ?? 0;

    /// <summary>Returns a buffer of at least <paramref name="lengthInBytes"/> bytes (reusing the current one when large enough).</summary>
    public PinnedHostBuffer Ensure(long lengthInBytes)
    {
        if (_buffer is not null && _buffer.LengthInBytes >= lengthInBytes) return _buffer;
        _buffer?.Dispose();
        _buffer = null;
        var b = _accelerator.AllocatePinned(Math.Max(lengthInBytes, IShardFile.DirectIOAlignmentInBytes));
        Prefault(b);
        _buffer = b;
        return b;
    }

    /// <summary>Touches every page so that the first save does not pay page faults.</summary>
    public static unsafe void Prefault(PinnedHostBuffer buffer)
    {
        var p = (byte*)buffer.Pointer;
        for (long i = 0; i < buffer.LengthInBytes; i += 4096) p[i] = 0;
    }

    public void Dispose()
    {
        _buffer?.Dispose();
        _buffer = null;
    }
}

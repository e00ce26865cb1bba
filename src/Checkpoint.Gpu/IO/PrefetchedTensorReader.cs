using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;

namespace CheckpointGpu.IO;

/// <summary>
/// An <see cref="ITensorReader"/> that serves variable values from an IO-pipeline <see cref="RestoreSession"/>'s
/// prefetch cache (read sequentially through the staging ring with O_DIRECT, checksums verified as the bytes passed),
/// so restoring a variable — now or when it is created later (restore-on-create) — costs one host-to-device copy on the
/// variable's own stream, in order with the work that follows. Values not in the cache (over the budget, on another
/// accelerator, partitioned) and all metadata, strings and host state come from the synchronous bundle reader.
/// </summary>
internal sealed class PrefetchedTensorReader(BundleTensorReader inner, RestoreSession session) : ITensorReader
{
    public string Prefix => inner.Prefix;

    public IEnumerable<string> Keys => inner.Keys;

    public bool TryGetInfo(string key, out StoredTensorInfo info) => inner.TryGetInfo(key, out info);

    public byte[]? ReadObjectGraphBytes() => inner.ReadObjectGraphBytes();

    public void ReadIntoVariable(string key, Variable variable)
    {
        if (session.TryTakeCached(key, out var data) && data.Length == variable.LengthInBytes)
        {
            variable.CopyFromHost(data.Span, 0);
            return;
        }
        inner.ReadIntoVariable(key, variable);
    }

    public void ReadSliceIntoVariable(string key, TensorSlice slice, Variable variable) => inner.ReadSliceIntoVariable(key, slice, variable);

    public HostTensor ReadHost(string key) => inner.ReadHost(key);

    public void Dispose()
    {
        inner.Dispose();
        _ = session.DisposeAsync().AsTask();   // drops the cache once outstanding reads end; nothing to wait for here
    }
}

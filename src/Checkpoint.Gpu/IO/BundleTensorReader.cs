using CheckpointGpu.Format;

namespace CheckpointGpu.IO;

/// <summary>
/// The synchronous <see cref="ITensorReader"/> over <see cref="TensorBundleReader"/>: values travel file → host
/// chunk → device through the accelerator's default stream. The Pipeline's IO device replaces this seam.
/// </summary>
internal sealed class BundleTensorReader : ITensorReader
{
    // Chunk size for file → device copies (bounded host memory per read).
    private const int ChunkBytes = 4 << 20;

    // Tensors up to this size are read and checksum-verified in host memory before they reach the device.
    private const long VerifyFirstLimitBytes = 64L << 20;
    private readonly TensorBundleReader _reader;

    private BundleTensorReader(TensorBundleReader reader) { _reader = reader; }

    public static BundleTensorReader Open(string prefix) => new(TensorBundleReader.Open(prefix));

    /// <summary>Over an index and object graph read elsewhere (multi-worker restore: read once, broadcast).</summary>
    public static BundleTensorReader Open(TensorBundlePartIndex index, byte[]? objectGraphBytes) =>
        new(TensorBundleReader.OpenWithIndex(index)) { _graphBytes = objectGraphBytes };

    private byte[]? _graphBytes;

    public string Prefix => _reader.Prefix;

    /// <summary>Issue 14: whether the entry is LZ4-compressed (its stored bytes are not the tensor's).</summary>
    public bool IsCompressed(string key) => _reader.TryGetEntry(key, out var entry) && entry.Compression is not null;

    public IEnumerable<string> Keys => _reader.Entries.Where(e => !e.IsSliceEntry && e.Key.Length > 0).Select(e => e.Key);

    public bool TryGetInfo(string key, out StoredTensorInfo info)
    {
        if (_reader.TryGetEntry(key, out var entry) && !entry.IsSliceEntry)
        {
            info = new StoredTensorInfo(entry.DType, entry.Shape, entry.Size, entry.ShardId, entry.Offset);
            return true;
        }
        info = default;
        return false;
    }

    public byte[]? ReadObjectGraphBytes()
    {
        if (_graphBytes is not null) return _graphBytes;
        if (!_reader.TryGetEntry(CheckpointKeys.ObjectGraph, out var entry)) return null;
        if (entry.DType != DType.String || entry.Shape.Rank != 0)
            throw new CheckpointFormatException(CheckpointFormatError.MalformedProto, _reader.IndexPath,
                "the object graph entry is not a DT_STRING scalar", entry.Key, comparison: $"found {DTypes.GetName(entry.DType)} {entry.Shape}");
        return _reader.ReadStrings(entry)[0];
    }

    public void ReadIntoVariable(string key, Variable variable)
    {
        var entry = _reader.GetEntry(key);
        if (entry.IsPartitioned)
        {
            // Reassemble the whole tensor from its slices.
            ReadSliceIntoVariable(key, TensorSlice.Full(entry.Shape.Rank), variable);
            return;
        }
        if (entry.Size != variable.LengthInBytes)
            throw new CheckpointFormatException(CheckpointFormatError.SizeMismatch, _reader.IndexPath,
                "entry size does not match its dtype and shape", key, entry.ShardId, entry.Offset, entry.Size,
                comparison: $"expected {variable.LengthInBytes} bytes");
        if (entry.Size == 0) return;
        if (entry.Size <= VerifyFirstLimitBytes)
        {
            // Verify the checksum before the variable is touched: a corrupt value never lands, even partly.
            var bytes = GC.AllocateUninitializedArray<byte>((int)entry.Size);
            _reader.ReadTensor(entry, bytes);
            variable.CopyFromHost(bytes, 0);
            return;
        }
        // Larger tensors stream in bounded chunks; the CRC is checked at the end (a mismatch then leaves the
        // variable partly overwritten — RestoreAsync, which verifies in its prefetch cache first, avoids that).
        _reader.ReadTensor(entry, (chunk, offset) => variable.CopyFromHost(chunk, offset), ChunkBytes);
    }

    public void ReadSliceIntoVariable(string key, TensorSlice slice, Variable variable)
    {
        if (variable.LengthInBytes == 0) return;
        if (variable.LengthInBytes > Array.MaxLength)
            throw new NotSupportedException($"{_reader.Prefix}: slice {slice} of '{key}' is {variable.LengthInBytes} bytes; slices above 2 GiB are not supported on this path.");
        // Assemble in host memory (the stored slices are streamed and checksummed), then one host → device copy.
        var bytes = new byte[variable.LengthInBytes];
        _reader.ReadSlice(key, slice, bytes);
        variable.CopyFromHost(bytes, 0);
    }

    public HostTensor ReadHost(string key)
    {
        var entry = _reader.GetEntry(key);
        if (entry.DType == DType.String)
            return HostTensor.FromOwnedStrings(entry.Shape, _reader.ReadStrings(entry));
        if (!DTypes.IsFixedSize(entry.DType))
            throw new NotSupportedException($"{_reader.Prefix}: key '{key}' has dtype {DTypes.GetName(entry.DType)}, which cannot be restored into host state.");
        if (entry.Size > Array.MaxLength)
            throw new NotSupportedException($"{_reader.Prefix}: key '{key}' is {entry.Size} bytes, too large for host state.");
        var bytes = new byte[entry.Size];
        _reader.ReadTensor(entry, bytes);
        return HostTensor.FromOwnedBytes(entry.DType, entry.Shape, bytes);
    }

    public void Dispose() => _reader.Dispose();
}

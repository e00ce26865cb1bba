namespace CheckpointGpu.Format;

public static partial class TensorBundle
{
    /// <summary>
    /// Rewrites a bundle with or without LZ4 compression (issue 14; <c>ckpt convert</c>): every entry keeps its key,
    /// dtype, shape, shard, data order and CRC; compressed entries are decompressed (both checksums verified) and, with
    /// <paramref name="compression"/>, whole fixed-size tensors are compressed. Converting a compressed bundle with
    /// <paramref name="compression"/> = <see langword="null"/> gives a plain bundle TensorFlow reads; converting a plain
    /// little-endian TensorFlow bundle to compressed and back gives its original bytes.
    /// </summary>
    /// <param name="inputPrefix">Existing bundle.</param>
    /// <param name="outputPrefix">New bundle (committed with <see cref="TensorBundleWriter"/>'s protocol); must differ from the input.</param>
    /// <param name="compression">LZ4 settings, or <see langword="null"/> for a plain TensorFlow bundle.</param>
    /// <param name="storage">The storage seam the output is written and committed through; <see langword="null"/>: local files.</param>
    /// <returns>The output header.</returns>
    /// <exception cref="ArgumentException">Empty prefixes, or the same prefix twice.</exception>
    /// <exception cref="FileNotFoundException">Input files are missing.</exception>
    /// <exception cref="CheckpointFormatException">The input is corrupt (named file, key and offset).</exception>
    /// <exception cref="NotSupportedException">A compressed entry is larger than 2 GiB (one array).</exception>
    /// <exception cref="IOException">Writing failed; nothing is left under the output names.</exception>
    public static BundleHeader Convert(string inputPrefix, string outputPrefix, BundleCompressionOptions? compression, IShardStorage? storage = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(inputPrefix);
        ArgumentException.ThrowIfNullOrEmpty(outputPrefix);
        if (string.Equals(Path.GetFullPath(inputPrefix), Path.GetFullPath(outputPrefix), StringComparison.Ordinal))
            throw new ArgumentException("The output prefix must differ from the input.", nameof(outputPrefix));
        using var reader = TensorBundleReader.Open(inputPrefix);
        using var writer = new TensorBundleWriter(outputPrefix, new TensorBundleWriterOptions { ShardCount = reader.Header.ShardCount, Compression = compression, Storage = storage });
        var swapsNeeded = reader.Header.Endianness != BundleEndianness.Little;
        foreach (var entry in reader.Entries.Where(e => e.IsPartitioned)) writer.AddEncoded(entry, null);
        foreach (var entry in reader.EntriesInDataOrder)
        {
            var whole = DTypes.IsFixedSize(entry.DType) && !entry.IsSliceEntry;
            if (whole && (entry.Compression is not null || compression is not null || swapsNeeded))
            {
                if (entry.Size > Array.MaxLength)
                {
                    if (entry.Compression is not null)
                        throw new NotSupportedException($"'{entry.Key}' is a compressed tensor of {entry.Size} bytes; conversion handles up to {Array.MaxLength}.");
                }
                else
                {
                    var bytes = new byte[entry.Size];
                    reader.ReadTensor(entry, bytes);   // decompresses and verifies; little-endian host order
                    writer.Add(entry.Key, entry.DType, entry.Shape, bytes, entry.ShardId);
                    continue;
                }
            }
            // Everything else is copied as stored (its CRC is re-verified by the writer).
            writer.AddEncoded(entry, (buffer, offset) =>
            {
                reader.ReadRawBytes(entry, offset, buffer);
                return buffer.Length;
            });
        }
        writer.Finish();
        return writer.Header;
    }
}

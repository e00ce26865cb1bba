using CheckpointGpu.Format.Table;

namespace CheckpointGpu.Format;

/// <summary>
/// One input of <see cref="TensorBundle.Merge(IReadOnlyList{TensorBundlePartIndex}, string, TensorBundleMergeOptions?)"/>:
/// a bundle's prefix (where its data files are) and its parsed index, read from the <c>.index</c> file
/// (<see cref="Read"/>) or parsed from index bytes received over a network (<see cref="Parse"/>), so a merge need not
/// read the inputs' index files.
/// </summary>
/// <param name="Prefix">The bundle's prefix: its data files are <c>DataFilename(Prefix, shard, Header.ShardCount)</c>.</param>
/// <param name="Header">The bundle's header.</param>
/// <param name="Entries">The bundle's entries in index (key) order.</param>
public sealed record TensorBundlePartIndex(string Prefix, BundleHeader Header, IReadOnlyList<BundleEntry> Entries)
{
    /// <summary>Reads the index of the bundle at <paramref name="prefix"/> (<c>&lt;prefix&gt;.index</c>).</summary>
    /// <param name="prefix">Bundle prefix.</param>
    /// <returns>The part.</returns>
    /// <exception cref="FileNotFoundException">No <c>.index</c> file.</exception>
    /// <exception cref="CheckpointFormatException">The index is corrupt or exceeds the default limits.</exception>
    public static TensorBundlePartIndex Read(string prefix)
    {
        var (header, entries) = TensorBundleIndex.Read(prefix);
        return new TensorBundlePartIndex(prefix, header, entries);
    }

    /// <summary>
    /// Parses the bytes of a bundle's <c>.index</c> file (TF's table of <c>BundleHeaderProto</c> and
    /// <c>BundleEntryProto</c>, <c>tensorflow/core/util/tensor_bundle/tensor_bundle.cc</c>) with every check of a file read:
    /// block CRCs, key order, header, entry limits. The bytes are untrusted.
    /// </summary>
    /// <param name="prefix">The bundle's prefix (names its data files; also names the source in errors as <c>&lt;prefix&gt;.index</c>).</param>
    /// <param name="indexBytes">The index file's bytes.</param>
    /// <param name="options">Limits; <see cref="TensorBundleReaderOptions.Default"/> when null.</param>
    /// <returns>The part.</returns>
    /// <exception cref="CheckpointFormatException">Corrupt bytes, no header entry, or a limit exceeded (size above
    /// <see cref="TensorBundleReaderOptions.MaxIndexFileBytes"/>, too many entries, too long a key).</exception>
    public static TensorBundlePartIndex Parse(string prefix, ReadOnlySpan<byte> indexBytes, TensorBundleReaderOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        options ??= TensorBundleReaderOptions.Default;
        var source = BundleNaming.IndexFile(prefix);
        if (indexBytes.Length > options.MaxIndexFileBytes)
            ThrowHelper.Format(CheckpointFormatError.LimitExceeded, source, "index is larger than MaxIndexFileBytes", length: indexBytes.Length,
                comparison: $"limit {options.MaxIndexFileBytes} bytes");
        var table = TableReader.ReadAll(indexBytes.ToArray(), source, options.MaxEntryCount, options.MaxKeyLength);
        if (table.Count == 0 || table[0].Key.Length != 0)
            ThrowHelper.Format(CheckpointFormatError.MissingHeader, source, "the table has no bundle header (empty key) entry",
                comparison: table.Count == 0 ? "the table is empty" : $"first key is '{CheckpointKeys.ToDisplay(table[0].Key)}'");
        var header = BundleProtoConverter.ParseHeader(table[0].Value, source);
        var entries = new BundleEntry[table.Count - 1];
        for (var i = 1; i < table.Count; i++)
            entries[i - 1] = BundleProtoConverter.ParseEntry(table[i].Key, table[i].Value, source, header, options, table[i].Value.Offset);
        return new TensorBundlePartIndex(prefix, header, entries);
    }
}

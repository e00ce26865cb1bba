using System.Buffers.Binary;
using CheckpointGpu.Format.Table;

namespace CheckpointGpu.Format;

/// <summary>
/// Low-level access to a bundle's <c>.index</c> file: build it from a precomputed plan (entries with final
/// offsets and checksums, e.g. from the IO pipeline) or read it without opening data files.
/// Layout: header under key <c>""</c>, then entries in unsigned key byte order, in TF's SSTable format
/// (spec sections 2–3).
/// </summary>
/// <remarks>Stateless and thread-safe.</remarks>
public static class TensorBundleIndex
{
    /// <summary>
    /// Writes <paramref name="indexPath"/> atomically: to <c>&lt;indexPath&gt;.tempstate&lt;random u64&gt;</c>, flushed to
    /// disk, then renamed over <paramref name="indexPath"/>. On failure the temporary file is deleted and an
    /// existing index is left untouched.
    /// </summary>
    /// <param name="indexPath">Destination, normally <see cref="BundleNaming.IndexFile"/>.</param>
    /// <param name="header">The header (shard count, endianness, version).</param>
    /// <param name="entries">Entries in any order; sorted by key bytes here.</param>
    /// <exception cref="ArgumentException">An entry has the empty key, keys repeat, or a shard id is outside the header's shard count.</exception>
    /// <exception cref="IOException">Writing or renaming failed.</exception>
    public static void Write(string indexPath, BundleHeader header, IEnumerable<BundleEntry> entries)
    {
        ArgumentException.ThrowIfNullOrEmpty(indexPath);
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(entries);
        var sorted = SortAndValidate(header, entries.Select(e => (e.GetKeyBytes(), e)));
        WriteAtomically(indexPath, stream => WriteTable(stream, header, sorted), flushToDisk: true);
    }

    /// <summary>Serializes the index table to <paramref name="output"/> (no temp file, no flush).</summary>
    /// <param name="output">A writable stream; written from its current position.</param>
    /// <param name="header">The header.</param>
    /// <param name="entries">Entries in any order.</param>
    /// <exception cref="ArgumentException">Invalid or duplicate keys, or shard ids outside the header's shard count.</exception>
    public static void Serialize(Stream output, BundleHeader header, IEnumerable<BundleEntry> entries)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(entries);
        WriteTable(output, header, SortAndValidate(header, entries.Select(e => (e.GetKeyBytes(), e))));
    }

    /// <summary>Reads and validates <c>&lt;prefix&gt;.index</c> without touching data files.</summary>
    /// <param name="prefix">Checkpoint prefix.</param>
    /// <param name="options">Limits; defaults when null.</param>
    /// <returns>The header and the entries in key byte order (header excluded).</returns>
    /// <exception cref="FileNotFoundException">The index file does not exist.</exception>
    /// <exception cref="CheckpointFormatException">The index is corrupt, exceeds a limit, or is a legacy V1 checkpoint.</exception>
    public static (BundleHeader Header, IReadOnlyList<BundleEntry> Entries) Read(string prefix, TensorBundleReaderOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        var (header, entries) = ReadCore(prefix, BundleNaming.IndexFile(prefix), options ?? TensorBundleReaderOptions.Default);
        return (header, entries);
    }

    internal static List<(byte[] Key, BundleEntry Entry)> SortAndValidate(BundleHeader header, IEnumerable<(byte[] Key, BundleEntry Entry)> items)
    {
        var list = items.ToList();
        list.Sort((a, b) => a.Key.AsSpan().SequenceCompareTo(b.Key));
        for (var i = 0; i < list.Count; i++)
        {
            var (key, entry) = list[i];
            if (key.Length == 0) throw new ArgumentException("The empty key is reserved for the bundle header.", nameof(items));
            if (i > 0 && key.AsSpan().SequenceEqual(list[i - 1].Key))
                throw new ArgumentException($"Duplicate key '{entry.Key}'.", nameof(items));
            if (!entry.IsPartitioned && (entry.ShardId < 0 || entry.ShardId >= header.ShardCount))
                throw new ArgumentException($"Entry '{entry.Key}' has shard id {entry.ShardId}, outside [0, {header.ShardCount}).", nameof(items));
        }
        return list;
    }

    internal static void WriteTable(Stream output, BundleHeader header, List<(byte[] Key, BundleEntry Entry)> sorted)
    {
        var table = new TableBuilder(output);
        table.Add([], BundleProtoConverter.Serialize(BundleProtoConverter.ToProto(header)));
        foreach (var (key, entry) in sorted) table.Add(key, BundleProtoConverter.Serialize(BundleProtoConverter.ToProto(entry)));
        table.Finish();
    }

    /// <summary>Temporary name next to <paramref name="path"/>: <c>&lt;path&gt;.tempstate&lt;random u64&gt;</c>, like TF (<see cref="TemporaryFileNames"/>).</summary>
    internal static string TempName(string path) => TemporaryFileNames.ForBundleFile(path);

    internal static void WriteAtomically(string path, Action<Stream> write, bool flushToDisk)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        var temp = TempName(path);
        try
        {
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(fs);
                fs.Flush(flushToDisk);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    internal static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    internal static (BundleHeader, BundleEntry[]) ReadCore(string prefix, string indexPath, TensorBundleReaderOptions options)
    {
        byte[] file;
        try
        {
            file = ReadBounded(indexPath, options.MaxIndexFileBytes);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            DetectLegacyV1(prefix);
            ThrowHelper.FileNotFound(indexPath, "checkpoint index");
            throw;
        }

        var table = TableReader.ReadAll(file, indexPath, options.MaxEntryCount, options.MaxKeyLength, options.MaxIndexFileBytes);
        if (table.Count == 0 || table[0].Key.Length != 0)
            ThrowHelper.Format(CheckpointFormatError.MissingHeader, indexPath, "the table has no bundle header (empty key) entry",
                comparison: table.Count == 0 ? "the table is empty" : $"first key is '{CheckpointKeys.ToDisplay(table[0].Key)}'");
        var header = BundleProtoConverter.ParseHeader(table[0].Value, indexPath);
        var entries = new BundleEntry[table.Count - 1];
        for (var i = 1; i < table.Count; i++)
            entries[i - 1] = BundleProtoConverter.ParseEntry(table[i].Key, table[i].Value, indexPath, header, options, table[i].FileOffset);
        return (header, entries);
    }

    private static byte[] ReadBounded(string path, long maxBytes)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        var length = RandomAccess.GetLength(handle);
        if (length > maxBytes)
            ThrowHelper.Format(CheckpointFormatError.LimitExceeded, path, "index file is larger than MaxIndexFileBytes", length: length,
                comparison: $"limit {maxBytes} bytes");
        var buffer = new byte[length];
        var done = 0;
        while (done < buffer.Length)
        {
            var n = RandomAccess.Read(handle, buffer.AsSpan(done), done);
            if (n == 0)
                ThrowHelper.Format(CheckpointFormatError.TooShort, path, "index file shrank while being read", length: length);
            done += n;
        }
        return buffer;
    }

    /// <summary>Throws <see cref="CheckpointFormatError.LegacyV1Checkpoint"/> when a V1 checkpoint sits at <paramref name="prefix"/> (spec 10.8).</summary>
    internal static void DetectLegacyV1(string prefix)
    {
        string? v1 = null;
        if (File.Exists(prefix)) v1 = prefix;
        else
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(prefix));
            var name = Path.GetFileName(prefix);
            if (!string.IsNullOrEmpty(dir) && Directory.Exists(dir) && name.Length > 0 && name.IndexOfAny(['*', '?', '[']) < 0)
                v1 = Directory.EnumerateFiles(dir, name + "-?????-of-?????").Order(StringComparer.Ordinal).FirstOrDefault();
        }
        if (v1 is null) return;
        if (!HasTableMagic(v1)) return;
        ThrowHelper.Format(CheckpointFormatError.LegacyV1Checkpoint, v1,
            $"no '{Path.GetFileName(prefix)}.index' but a TF V1 checkpoint table exists; TF V1 (pre-1.0 Saver write_version=V1) checkpoints are not supported: re-save with TF >= 1.x (V2 format) or tf.train.Checkpoint");
    }

    private static bool HasTableMagic(string path)
    {
        try
        {
            using var h = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var len = RandomAccess.GetLength(h);
            if (len < TableFormat.FooterLength) return false;
            Span<byte> magic = stackalloc byte[8];
            return RandomAccess.Read(h, magic, len - 8) == 8 && BinaryPrimitives.ReadUInt64LittleEndian(magic) == TableFormat.Magic;
        }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }
}

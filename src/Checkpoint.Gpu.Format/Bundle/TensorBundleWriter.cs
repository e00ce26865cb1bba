using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using CheckpointGpu.Format.Table;

namespace CheckpointGpu.Format;

/// <summary>
/// Writes a TensorFlow V2 checkpoint ("tensor bundle") that TF's <c>BundleReader</c> accepts
/// (<c>tensor_bundle.cc</c> <c>BundleWriter</c>; spec sections 1.3, 3, 4).
/// </summary>
/// <remarks>
/// <para><b>Commit protocol.</b> Each tensor's bytes are appended to its shard's data file in call order
/// (zero-padded to <see cref="TensorBundleWriterOptions.DataAlignmentInBytes"/>). Files are created, flushed and
/// published through <see cref="BundleCommit"/> (the one protocol of every writer, on
/// <see cref="TensorBundleWriterOptions.Storage"/>): temporary names, data fsync, index fsync, stale index removed, data
/// renamed, index renamed (the commit point), directory fsync. If anything fails, or the writer is disposed before
/// <see cref="Finish"/>, the temporary files are deleted and other checkpoints' files are left untouched.</para>
/// <para>In the library this writer is a stage, not a second save engine: checkpoints of live variables are written by the
/// IO pipeline; this class writes bundles from bytes already in host memory (<c>ckpt convert</c>, tests, tools).</para>
/// <para>Given a TF checkpoint's entries added in their original data order (per shard, by offset), the
/// output is byte-identical to TF's files.</para>
/// <para>Not thread-safe: one caller at a time.</para>
/// </remarks>
public sealed class TensorBundleWriter : IDisposable
{
    private sealed class Shard(string finalPath, ShardFileWriteStream stream)
    {
        public string FinalPath { get; } = finalPath;
        public ShardFileWriteStream Stream { get; } = stream;
        public long Position { get; set; }
    }

    private readonly TensorBundleWriterOptions _options;
    private readonly Shard[] _shards;
    private readonly Dictionary<byte[], BundleEntry> _entries = new(ByteKeyComparer.Instance);
    private readonly BundleCommit _commit;
    private bool _finished;
    private bool _failed;
    private bool _disposed;

    /// <summary>Creates the temporary data files of a new bundle at <paramref name="prefix"/>.</summary>
    /// <param name="prefix">Checkpoint prefix, e.g. <c>/train/ckpt-3</c>; its directory is created if missing.</param>
    /// <param name="options">Shard count, alignment, header version; defaults when null.</param>
    /// <exception cref="ArgumentException"><paramref name="prefix"/> is empty.</exception>
    /// <exception cref="IOException">A data file cannot be created.</exception>
    public TensorBundleWriter(string prefix, TensorBundleWriterOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        _options = options ?? TensorBundleWriterOptions.Default;
        Prefix = prefix;
        IndexPath = BundleNaming.IndexFile(prefix);
        _commit = new BundleCommit(prefix, _options.ShardCount, _options.Storage, _options.FlushToDisk);
        _shards = new Shard[_options.ShardCount];
        try
        {
            for (var i = 0; i < _shards.Length; i++)
            {
                var file = _commit.CreateDataFile(i, preferDirectIO: false);
                _shards[i] = new Shard(_commit.DataPath(i), new ShardFileWriteStream(file, Math.Max(4096, _options.WriteBufferBytes)));
            }
        }
        catch
        {
            Cleanup();
            throw;
        }
    }

    /// <summary>The checkpoint prefix.</summary>
    public string Prefix { get; }

    /// <summary>Final path of the <c>.index</c> file.</summary>
    public string IndexPath { get; }

    /// <summary>Number of data files.</summary>
    public int ShardCount => _shards.Length;

    /// <summary>Entries added so far (unordered).</summary>
    public IReadOnlyCollection<BundleEntry> Entries => _entries.Values;

    /// <summary>The header that <see cref="Finish"/> writes.</summary>
    public BundleHeader Header => _options.Compression is not null   // issue 14: TF must refuse compressed bundles
        ? new(_shards.Length, BundleEndianness.Little, BundleHeader.CompressedVersion, BundleHeader.CompressedVersion, _options.BadConsumers.ToArray())
        : new(_shards.Length, BundleEndianness.Little, _options.Producer, _options.MinConsumer, _options.BadConsumers.ToArray());

    /// <summary>Adds a fixed-size tensor from memory.</summary>
    /// <param name="key">Table key (non-empty, unique).</param>
    /// <param name="dtype">A fixed-size dtype.</param>
    /// <param name="shape">Full shape.</param>
    /// <param name="data">Elements, row-major, little-endian; length must be elements × width bytes.</param>
    /// <param name="shardId">Data file, 0 ≤ id &lt; <see cref="ShardCount"/>.</param>
    /// <returns>The recorded entry (offset and CRC filled in).</returns>
    /// <exception cref="ArgumentException">Empty or duplicate key, non-fixed-size dtype, or wrong data length.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="shardId"/> is out of range.</exception>
    /// <exception cref="InvalidOperationException">The writer has finished or failed.</exception>
    /// <exception cref="IOException">Writing failed (the writer is then failed).</exception>
    public BundleEntry Add(string key, DType dtype, TensorShape shape, ReadOnlySpan<byte> data, int shardId = 0)
    {
        var keyBytes = CheckKey(key);
        var size = CheckFixed(key, dtype, shape, data.Length);
        var shard = CheckShard(shardId);
        if (_options.Compression is not null && TryAddCompressed(keyBytes, key, dtype, shape, data, shard, shardId) is { } compressed) return compressed;
        var offset = shard.Position;
        uint crc;
        try
        {
            shard.Stream.Write(data);
            crc = MaskedCrc32C.ComputeMasked(data);
        }
        catch
        {
            _failed = true;
            throw;
        }
        return Complete(keyBytes, shard, new BundleEntry(key, dtype, shape, shardId, offset, size, crc));
    }

    /// <summary>Adds a fixed-size tensor of any size (also &gt; 2 GiB) pulled from <paramref name="source"/> in chunks.</summary>
    /// <param name="key">Table key.</param>
    /// <param name="dtype">A fixed-size dtype.</param>
    /// <param name="shape">Full shape.</param>
    /// <param name="sizeInBytes">Payload length; must equal elements × width.</param>
    /// <param name="source">Fills buffers with consecutive payload bytes (little-endian elements).</param>
    /// <param name="shardId">Data file.</param>
    /// <returns>The recorded entry.</returns>
    /// <exception cref="ArgumentException">Empty or duplicate key, non-fixed-size dtype, or wrong size.</exception>
    /// <exception cref="InvalidOperationException">The writer has finished or failed, or <paramref name="source"/> returned 0 or too many bytes.</exception>
    /// <exception cref="IOException">Writing failed.</exception>
    public BundleEntry Add(string key, DType dtype, TensorShape shape, long sizeInBytes, TensorChunkSource source, int shardId = 0)
    {
        ArgumentNullException.ThrowIfNull(source);
        var keyBytes = CheckKey(key);
        var size = CheckFixed(key, dtype, shape, sizeInBytes);
        var shard = CheckShard(shardId);
        if (_options.Compression is { } compression && size >= compression.MinTensorBytes && size <= Array.MaxLength)
        {
            // Issue 14: the whole tensor is gathered in host memory so its blocks can be compressed in parallel.
            var whole = new byte[size];
            long done = 0;
            while (done < size)
            {
                var n = source(whole.AsSpan((int)done, (int)Math.Min(4 << 20, size - done)), done);
                if (n <= 0 || n > size - done)
                    throw new InvalidOperationException($"Tensor source returned {n} bytes at offset {done} of {size}.");
                done += n;
            }
            return TryAddCompressed(keyBytes, key, dtype, shape, whole, shard, shardId) ?? Add(key, dtype, shape, whole, shardId);
        }
        return Write(keyBytes, key, shard, shardId, () =>
        {
            var crc = 0u;
            Pump(shard, size, source, chunk => crc = MaskedCrc32C.Extend(crc, chunk));
            return MaskedCrc32C.Mask(crc);
        }, e => e with { DType = dtype, Shape = shape, Size = size });
    }

    /// <summary>Adds a DT_STRING tensor (spec section 4.3): varint lengths, masked length checksum, then the bytes.</summary>
    /// <param name="key">Table key.</param>
    /// <param name="shape">Full shape; its element count must equal <c>values.Count</c>.</param>
    /// <param name="values">Elements as raw bytes, row-major.</param>
    /// <param name="shardId">Data file.</param>
    /// <returns>The recorded entry.</returns>
    /// <exception cref="ArgumentException">Empty or duplicate key, or element count mismatch.</exception>
    /// <exception cref="InvalidOperationException">The writer has finished or failed.</exception>
    /// <exception cref="IOException">Writing failed.</exception>
    public BundleEntry AddStrings(string key, TensorShape shape, IReadOnlyList<byte[]> values, int shardId = 0)
    {
        ArgumentNullException.ThrowIfNull(values);
        var keyBytes = CheckKey(key);
        if (!shape.TryGetElementCount(out var n) || n != values.Count)
            throw new ArgumentException($"Shape {shape} of '{key}' needs {(shape.TryGetElementCount(out var m) ? m : -1)} strings, got {values.Count}.", nameof(values));
        var shard = CheckShard(shardId);
        long size = 4;
        foreach (var v in values)
        {
            ArgumentNullException.ThrowIfNull(v, nameof(values));
            size = checked(size + Varint.Length((ulong)v.Length) + v.Length);
        }
        return Write(keyBytes, key, shard, shardId, () =>
        {
            var header = new List<byte>(values.Count + 4);
            var crc = 0u;
            Span<byte> len4 = stackalloc byte[4];
            foreach (var v in values)
            {
                Varint.Write64(header, (ulong)v.Length);
                BinaryPrimitives.WriteUInt32LittleEndian(len4, (uint)v.Length); // lengths < 2^32 hash as 4 bytes
                crc = MaskedCrc32C.Extend(crc, len4);
            }
            BinaryPrimitives.WriteUInt32LittleEndian(len4, MaskedCrc32C.Mask(crc));
            crc = MaskedCrc32C.Extend(crc, len4);
            header.AddRange(len4);
            var headerBytes = header.ToArray();
            shard.Stream.Write(headerBytes);
            foreach (var v in values)
            {
                shard.Stream.Write(v);
                crc = MaskedCrc32C.Extend(crc, v);
            }
            return MaskedCrc32C.Mask(crc);
        }, e => e with { DType = DType.String, Shape = shape, Size = size });
    }

    /// <summary>
    /// Adds an already-encoded payload unchanged (e.g. DT_STRING or DT_VARIANT bytes copied from another
    /// bundle). The bytes are checked against <paramref name="maskedCrc32C"/> with the dtype's algorithm.
    /// </summary>
    /// <param name="key">Table key.</param>
    /// <param name="dtype">Any storable dtype.</param>
    /// <param name="shape">Full shape.</param>
    /// <param name="sizeInBytes">Payload length in bytes.</param>
    /// <param name="maskedCrc32C">The entry CRC as stored by TF (masked).</param>
    /// <param name="source">Fills buffers with consecutive payload bytes.</param>
    /// <param name="shardId">Data file.</param>
    /// <returns>The recorded entry.</returns>
    /// <exception cref="ArgumentException">Empty or duplicate key, unsupported dtype, or a fixed-size payload of the wrong size.</exception>
    /// <exception cref="CheckpointFormatException">The payload is malformed or does not match <paramref name="maskedCrc32C"/> (the writer is then failed).</exception>
    /// <exception cref="InvalidOperationException">The writer has finished or failed, or the source misbehaved.</exception>
    /// <exception cref="IOException">Writing failed.</exception>
    public BundleEntry AddEncoded(string key, DType dtype, TensorShape shape, long sizeInBytes, uint maskedCrc32C, TensorChunkSource source, int shardId = 0)
    {
        var keyBytes = CheckKey(key);
        return AddEncodedCore(keyBytes, new BundleEntry(key, dtype, shape, shardId, 0, sizeInBytes, maskedCrc32C), source);
    }

    /// <summary>
    /// Adds an entry copied from another bundle, keeping its exact key bytes (slice keys are not UTF-8),
    /// dtype, shape, shard id, size, CRC and slices; only the offset is assigned here. Partitioned
    /// full-tensor entries (<see cref="BundleEntry.IsPartitioned"/>) have no payload: pass a null source.
    /// </summary>
    /// <param name="entry">The entry to reproduce.</param>
    /// <param name="source">Payload source; null only for partitioned entries.</param>
    /// <returns>The recorded entry.</returns>
    /// <exception cref="ArgumentException">Empty or duplicate key, missing source, or invalid size.</exception>
    /// <exception cref="CheckpointFormatException">The payload does not match the entry's CRC.</exception>
    /// <exception cref="InvalidOperationException">The writer has finished or failed.</exception>
    public BundleEntry AddEncoded(BundleEntry entry, TensorChunkSource? source)
    {
        ArgumentNullException.ThrowIfNull(entry);
        var keyBytes = entry.GetKeyBytes();
        CheckKeyBytes(keyBytes, entry.Key);
        if (entry.IsPartitioned)
        {
            ThrowIfUnusable();
            var recorded = entry with { ShardId = 0, Offset = 0, Size = 0, Crc32C = 0 };
            _entries.Add(keyBytes, recorded);
            return recorded;
        }
        return AddEncodedCore(keyBytes, entry, source ?? throw new ArgumentNullException(nameof(source)));
    }

    /// <summary>
    /// Adds one slice of a partitioned tensor (<c>BundleWriter::AddSlice</c>, spec section 3.4). A slice covering
    /// the whole tensor is stored as a normal entry under <paramref name="fullName"/>; otherwise the data goes
    /// under the encoded slice key and the slice is appended to the full-tensor entry's slice list.
    /// </summary>
    /// <param name="fullName">Key of the full tensor.</param>
    /// <param name="fullShape">Shape of the full tensor.</param>
    /// <param name="slice">The slice (same rank as <paramref name="fullShape"/>).</param>
    /// <param name="dtype">A fixed-size dtype.</param>
    /// <param name="data">The slice's elements, row-major within the slice.</param>
    /// <param name="shardId">Data file.</param>
    /// <returns>The recorded slice entry.</returns>
    /// <exception cref="ArgumentException">Invalid slice, size mismatch, dtype/shape disagreeing with earlier slices, or duplicate slice.</exception>
    /// <exception cref="InvalidOperationException">The writer has finished or failed.</exception>
    public BundleEntry AddSlice(string fullName, TensorShape fullShape, TensorSlice slice, DType dtype, ReadOnlySpan<byte> data, int shardId = 0)
    {
        ArgumentNullException.ThrowIfNull(slice);
        var fullKey = CheckKey(fullName, allowExisting: true);
        var sliceShape = slice.GetSliceShape(fullShape);
        if (slice.CoversWhole(fullShape)) return Add(fullName, dtype, fullShape, data, shardId);
        _entries.TryGetValue(fullKey, out var full);
        if (full is not null && (!full.IsPartitioned || full.DType != dtype || full.Shape != fullShape))
            throw new ArgumentException($"'{fullName}' already exists with a different dtype/shape or as an unpartitioned tensor.", nameof(fullName));
        var sliceKey = TensorSlice.EncodeSliceKey(fullKey, slice);
        CheckKeyBytes(sliceKey, fullName);
        var size = CheckFixed(fullName, dtype, sliceShape, data.Length);
        var shard = CheckShard(shardId);
        var display = CheckpointKeys.ToDisplay(sliceKey);
        var offset = shard.Position;
        uint crc;
        try
        {
            shard.Stream.Write(data);
            crc = MaskedCrc32C.ComputeMasked(data);
        }
        catch
        {
            _failed = true;
            throw;
        }
        var recorded = Complete(sliceKey, shard, new BundleEntry(display, dtype, sliceShape, shardId, offset, size, crc) { KeyUtf8 = sliceKey });
        var slices = full is null ? new List<TensorSlice>() : full.Slices.ToList();
        slices.Add(slice);
        _entries[fullKey] = new BundleEntry(fullName, dtype, fullShape, 0, 0, 0, 0, slices);
        return recorded;
    }

    /// <summary>
    /// Flushes the data files, writes the index, and renames everything to its final name (index last).
    /// </summary>
    /// <exception cref="InvalidOperationException">Already finished, failed or disposed.</exception>
    /// <exception cref="IOException">Flushing, writing or renaming failed; temporary files are deleted.</exception>
    public void Finish()
    {
        ThrowIfUnusable();
        try
        {
            foreach (var s in _shards)
            {
                s.Stream.Flush();
                _commit.FlushData(s.Stream.File, s.Stream.Position);
                s.Stream.Dispose();
            }
            var header = Header;
            var sorted = TensorBundleIndex.SortAndValidate(header, _entries.Select(kv => (kv.Key, kv.Value)));
            using (var ms = new MemoryStream())
            {
                TensorBundleIndex.WriteTable(ms, header, sorted);
                _commit.WriteIndex(ms.GetBuffer().AsSpan(0, (int)ms.Length));
            }
            _commit.Publish();
            _finished = true;
        }
        catch
        {
            _failed = true;
            Cleanup();
            throw;
        }
    }

    /// <summary>Closes the files; before <see cref="Finish"/>, deletes the temporary files. Never throws.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (!_finished) Cleanup();
    }

    private BundleEntry AddEncodedCore(byte[] keyBytes, BundleEntry template, TensorChunkSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentOutOfRangeException.ThrowIfNegative(template.Size, nameof(template.Size));
        if (!template.Shape.TryGetElementCount(out var elements))
            throw new ArgumentException($"Shape {template.Shape} of '{template.Key}' overflows.", nameof(template));
        if (template.DType is not DType.String and not DType.Variant) _ = CheckFixed(template.Key, template.DType, template.Shape, template.Size);
        var shard = CheckShard(template.ShardId);
        return Write(keyBytes, template.Key, shard, template.ShardId, () =>
        {
            var decoder = new PayloadDecoder(template.DType, elements,
                new PayloadLocation(shard.FinalPath, template.Key, template.ShardId, shard.Position, template.Size),
                bigEndian: false, verifyChecksums: true, collectStrings: false, int.MaxValue, int.MaxValue);
            Pump(shard, template.Size, source, chunk => decoder.Feed(chunk));
            var crc = decoder.Complete();
            if (crc != template.Crc32C)
                ThrowHelper.ChecksumMismatch(shard.FinalPath, "the encoded payload supplied for", template.Key, template.ShardId, shard.Position,
                    template.Size, template.Crc32C, crc);
            return crc;
        }, e => e with { DType = template.DType, Shape = template.Shape, Size = template.Size, Slices = Array.Empty<TensorSlice>(), KeyUtf8 = keyBytes });
    }

    /// <summary>Issue 14: writes <paramref name="data"/> LZ4-compressed, or returns null when it does not shrink (nothing written then).</summary>
    private BundleEntry? TryAddCompressed(byte[] keyBytes, string key, DType dtype, TensorShape shape, ReadOnlySpan<byte> data, Shard shard, int shardId)
    {
        var stored = BundleCompression.Compress(data, dtype, _options.Compression!, out var info);
        if (stored is null) return null;
        var offset = shard.Position;
        var crc = MaskedCrc32C.ComputeMasked(data);
        try
        {
            shard.Stream.Write(stored);
        }
        catch
        {
            _failed = true;
            throw;
        }
        return Complete(keyBytes, shard, new BundleEntry(key, dtype, shape, shardId, offset, data.Length, crc) { Compression = info });
    }

    /// <summary>Writes one payload, pads, and records the entry. Any failure here poisons the writer.</summary>
    private BundleEntry Write(byte[] keyBytes, string key, Shard shard, int shardId, Func<uint> writePayload, Func<BundleEntry, BundleEntry> complete)
    {
        var offset = shard.Position;
        uint crc;
        try
        {
            crc = writePayload();
        }
        catch
        {
            _failed = true;
            throw;
        }
        var entry = complete(new BundleEntry(key, DType.Invalid, TensorShape.Scalar, shardId, offset, 0, crc));
        return Complete(keyBytes, shard, entry with { Offset = offset, Crc32C = crc });
    }

    /// <summary>Checks the bytes written match the entry, pads to the alignment, and records the entry.</summary>
    private BundleEntry Complete(byte[] keyBytes, Shard shard, BundleEntry entry)
    {
        try
        {
            var end = shard.Stream.Position;
            var written = end - entry.Offset;
            if (written != entry.StoredSize)
                throw new InvalidOperationException($"'{entry.Key}': wrote {written} bytes but the entry declares {entry.Size}.");
            var alignment = _options.DataAlignmentInBytes;
            var pad = (int)((alignment - (end % alignment)) % alignment);
            if (pad > 0) shard.Stream.Write(new byte[pad]);
            shard.Position = end + pad;
            _entries.Add(keyBytes, entry);
            return entry;
        }
        catch
        {
            _failed = true;
            throw;
        }
    }

    private static void Pump(Shard shard, long size, TensorChunkSource source, Action<ReadOnlySpan<byte>> observe)
    {
        var buffer = ArrayPool<byte>.Shared.Rent((int)Math.Clamp(size, 1, 4 << 20));
        try
        {
            long done = 0;
            while (done < size)
            {
                var want = (int)Math.Min(buffer.Length, size - done);
                var n = source(buffer.AsSpan(0, want), done);
                if (n <= 0 || n > want)
                    throw new InvalidOperationException($"Tensor source returned {n} bytes at offset {done} of {size} (expected 1..{want}).");
                var chunk = buffer.AsSpan(0, n);
                observe(chunk);
                shard.Stream.Write(chunk);
                done += n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private byte[] CheckKey(string key, bool allowExisting = false)
    {
        ArgumentNullException.ThrowIfNull(key);
        var bytes = Encoding.UTF8.GetBytes(key);
        if (!allowExisting) CheckKeyBytes(bytes, key);
        else ThrowIfUnusable();
        if (bytes.Length == 0) throw new ArgumentException("The empty key is reserved for the bundle header.", nameof(key));
        return bytes;
    }

    private void CheckKeyBytes(byte[] bytes, string key)
    {
        ThrowIfUnusable();
        if (bytes.Length == 0) throw new ArgumentException("The empty key is reserved for the bundle header.", nameof(key));
        if (_entries.ContainsKey(bytes)) throw new ArgumentException($"Duplicate key '{key}' in bundle '{Prefix}'.", nameof(key));
    }

    private static long CheckFixed(string key, DType dtype, TensorShape shape, long length)
    {
        if (!DTypes.IsFixedSize(dtype))
            throw new ArgumentException($"'{key}': dtype {DTypes.GetName(dtype)} is not fixed-size; use AddStrings or AddEncoded.", nameof(dtype));
        var width = DTypes.GetElementSize(dtype);
        if (!shape.TryGetElementCount(out var n) || n > long.MaxValue / width)
            throw new ArgumentException($"'{key}': shape {shape} is too large.", nameof(shape));
        if (n * width != length)
            throw new ArgumentException($"'{key}': {DTypes.GetName(dtype)} {shape} needs {n * width} bytes, got {length}.", nameof(length));
        return length;
    }

    private Shard CheckShard(int shardId)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(shardId);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(shardId, _shards.Length);
        return _shards[shardId];
    }

    private void ThrowIfUnusable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_finished || _failed) ThrowHelper.Finished();
    }

    private void Cleanup()
    {
        foreach (var s in _shards)
        {
            if (s is null) continue;
            try { s.Stream.Dispose(); }
            catch (IOException) { }
        }
        _commit?.Dispose();
    }
}

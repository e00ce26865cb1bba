using System.Buffers.Binary;

namespace CheckpointGpu.Format.Table;

/// <summary>
/// Writes TF's SSTable (<c>tsl/lib/io/table_builder.cc</c>; spec section 2) to a stream: data blocks of
/// ≤ 256 KiB with restart interval 16, no compression, an empty metaindex block, an index block with
/// shortest-separator keys (restart interval 1) and the 48-byte footer.
/// </summary>
/// <remarks>Keys must be added in strictly increasing unsigned byte order. Not thread-safe.</remarks>
internal sealed class TableBuilder
{
    private readonly Stream _output;
    private readonly int _blockSize;
    private readonly BlockBuilder _dataBlock = new(TableFormat.RestartInterval);
    private readonly BlockBuilder _indexBlock = new(1);
    private byte[] _lastKey = [];
    private long _entryCount;
    private long _offset;
    private bool _pendingIndexEntry;
    private (long Offset, long Size) _pendingHandle;
    private bool _finished;

    public TableBuilder(Stream output, int blockSize = TableFormat.BlockSize)
    {
        _output = output;
        _blockSize = blockSize;
    }

    public long EntryCount => _entryCount;

    /// <summary>Bytes written so far.</summary>
    public long Length => _offset;

    /// <exception cref="ArgumentException">The key is not greater than the previous key.</exception>
    public void Add(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        if (_finished) throw new InvalidOperationException("The table has been finished.");
        if (_entryCount > 0)
        {
            if (key.SequenceCompareTo(_lastKey) <= 0)
                throw new ArgumentException("Table keys must be added in strictly increasing byte order.", nameof(key));
            // A huge entry starts a fresh block (kOverlyLargeBlockRatio = 2).
            if ((long)key.Length + value.Length >= 2L * _blockSize) Flush();
        }

        if (_pendingIndexEntry)
        {
            var separator = ShortestSeparator(_lastKey, key);
            _indexBlock.Add(separator, EncodeHandle(_pendingHandle));
            _pendingIndexEntry = false;
        }

        _lastKey = key.ToArray();
        _entryCount++;
        _dataBlock.Add(key, value);
        if (_dataBlock.CurrentSizeEstimate >= _blockSize) Flush();
    }

    private void Flush()
    {
        if (_dataBlock.IsEmpty) return;
        _pendingHandle = WriteBlock(_dataBlock);
        _pendingIndexEntry = true;
    }

    private (long, long) WriteBlock(BlockBuilder block)
    {
        var contents = block.FinishAndReset();
        var handle = (_offset, (long)contents.Length);
        Span<byte> trailer = stackalloc byte[TableFormat.BlockTrailerLength];
        trailer[0] = TableFormat.NoCompression;
        var crc = MaskedCrc32C.Extend(MaskedCrc32C.Compute(contents), trailer[..1]);
        BinaryPrimitives.WriteUInt32LittleEndian(trailer[1..], MaskedCrc32C.Mask(crc));
        _output.Write(contents);
        _output.Write(trailer);
        _offset += contents.Length + TableFormat.BlockTrailerLength;
        return handle;
    }

    /// <summary>Writes the remaining blocks and the footer. The stream is not flushed or closed.</summary>
    public void Finish()
    {
        if (_finished) throw new InvalidOperationException("The table has been finished.");
        Flush();
        _finished = true;
        var metaHandle = WriteBlock(new BlockBuilder(TableFormat.RestartInterval));
        if (_pendingIndexEntry)
        {
            _indexBlock.Add(ShortSuccessor(_lastKey), EncodeHandle(_pendingHandle));
            _pendingIndexEntry = false;
        }
        var indexHandle = WriteBlock(_indexBlock);

        Span<byte> footer = stackalloc byte[TableFormat.FooterLength];
        footer.Clear();
        var n = Varint.Write64(footer, (ulong)metaHandle.Item1);
        n += Varint.Write64(footer[n..], (ulong)metaHandle.Item2);
        n += Varint.Write64(footer[n..], (ulong)indexHandle.Item1);
        _ = Varint.Write64(footer[n..], (ulong)indexHandle.Item2);
        BinaryPrimitives.WriteUInt64LittleEndian(footer[(2 * TableFormat.MaxHandleLength)..], TableFormat.Magic);
        _output.Write(footer);
        _offset += TableFormat.FooterLength;
    }

    private static byte[] EncodeHandle((long Offset, long Size) handle)
    {
        Span<byte> buf = stackalloc byte[TableFormat.MaxHandleLength];
        var n = Varint.Write64(buf, (ulong)handle.Offset);
        n += Varint.Write64(buf[n..], (ulong)handle.Size);
        return buf[..n].ToArray();
    }

    /// <summary>A short key k with start ≤ k &lt; limit (<c>FindShortestSeparator</c>).</summary>
    internal static byte[] ShortestSeparator(ReadOnlySpan<byte> start, ReadOnlySpan<byte> limit)
    {
        var min = Math.Min(start.Length, limit.Length);
        var d = 0;
        while (d < min && start[d] == limit[d]) d++;
        if (d < min)
        {
            var b = start[d];
            if (b < 0xFF && b + 1 < limit[d])
            {
                var result = start[..(d + 1)].ToArray();
                result[d]++;
                return result;
            }
        }
        return start.ToArray();
    }

    /// <summary>A short key ≥ key (<c>FindShortSuccessor</c>): first non-0xFF byte incremented, rest dropped.</summary>
    internal static byte[] ShortSuccessor(ReadOnlySpan<byte> key)
    {
        for (var i = 0; i < key.Length; i++)
        {
            if (key[i] != 0xFF)
            {
                var result = key[..(i + 1)].ToArray();
                result[i]++;
                return result;
            }
        }
        return key.ToArray();
    }
}

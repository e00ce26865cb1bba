using System.Buffers.Binary;

namespace CheckpointGpu.Format.Table;

/// <summary>
/// One key/value of a table; <see cref="Value"/> points into the file buffer, or into the decompressed contents of a
/// Snappy-compressed block. <see cref="FileOffset"/> is the value's offset in the file (uncompressed blocks) or the
/// offset of its compressed block (for error messages).
/// </summary>
internal readonly record struct TableEntry(byte[] Key, ArraySegment<byte> Value, long FileOffset);

/// <summary>
/// Reads a whole TF SSTable held in memory (<c>tsl/lib/io/table.cc</c>, <c>block.cc</c>, <c>format.cc</c>;
/// spec section 2), validating everything: footer magic, block handles inside the file, every block's
/// trailer and masked CRC32C, restart arrays, varint bounds, shared-prefix lengths, and strictly
/// increasing keys across the table. Blocks of compression type 1 are Snappy-decompressed (TF's <c>ReadBlock</c>,
/// <c>tensorflow/tsl/lib/io/format.cc</c>, <c>kSnappyCompression</c>): the CRC covers the stored (compressed) bytes and
/// the type byte, as <c>table_builder.cc</c>'s <c>WriteRawBlock</c> computes it; the decompressed length from Snappy's
/// varint preamble is checked against <c>maxDecompressedBytes</c> and against Snappy's largest possible expansion of
/// the block before anything is allocated.
/// </summary>
internal static class TableReader
{
    /// <summary>
    /// No Snappy block expands more than this many times: the densest element, a 3-byte copy with a 2-byte offset,
    /// produces at most 64 bytes (about 21.3×); literals never expand.
    /// </summary>
    internal const int MaxSnappyExpansion = 22;

    /// <summary>Returns every entry in table order.</summary>
    /// <param name="file">The whole table file.</param>
    /// <param name="path">File name for error messages.</param>
    /// <param name="maxEntryCount">Most entries accepted.</param>
    /// <param name="maxKeyLength">Longest key accepted.</param>
    /// <param name="maxDecompressedBytes">Most bytes all Snappy-compressed blocks together may decompress to (each block too).</param>
    /// <exception cref="CheckpointFormatException">Any structural problem, including corrupt or oversized Snappy blocks.</exception>
    public static List<TableEntry> ReadAll(byte[] file, string path, int maxEntryCount, int maxKeyLength, long maxDecompressedBytes = 1L << 30)
    {
        var budget = maxDecompressedBytes;
        if (file.Length < TableFormat.FooterLength)
            ThrowHelper.Format(CheckpointFormatError.TooShort, path, "file too short to be an SSTable",
                length: file.Length, comparison: $"expected at least {TableFormat.FooterLength} bytes, found {file.Length}");
        var footerStart = file.Length - TableFormat.FooterLength;
        var footer = file.AsSpan(footerStart);
        var magic = BinaryPrimitives.ReadUInt64LittleEndian(footer[(2 * TableFormat.MaxHandleLength)..]);
        if (magic != TableFormat.Magic)
            ThrowHelper.Format(CheckpointFormatError.BadMagic, path, "not an SSTable (bad magic number)", offset: file.Length - 8,
                comparison: $"expected 0x{TableFormat.Magic:x16}, found 0x{magic:x16}");

        var pos = 0;
        var handles = footer[..(2 * TableFormat.MaxHandleLength)];
        (long Offset, long Size) indexHandle = default;
        if (!TryDecodeHandle(handles, ref pos, out var metaHandle) || !TryDecodeHandle(handles, ref pos, out indexHandle))
            ThrowHelper.Format(CheckpointFormatError.BadBlockTrailer, path, "malformed block handles in the table footer", offset: footerStart);

        _ = ReadBlock(file, path, metaHandle, footerStart, "metaindex block", ref budget);
        var indexBlock = ReadBlock(file, path, indexHandle, footerStart, "index block", ref budget);
        var indexEntries = new List<TableEntry>();
        ParseBlock(path, indexBlock, indexEntries, int.MaxValue, maxKeyLength, "index block");

        var result = new List<TableEntry>();
        byte[]? previous = null;
        foreach (var ie in indexEntries)
        {
            var hp = 0;
            var hv = ie.Value.AsSpan();
            if (!TryDecodeHandle(hv, ref hp, out var handle) || hp != hv.Length)
                ThrowHelper.Format(CheckpointFormatError.BadBlockTrailer, path, "malformed data block handle in the index block", offset: ie.FileOffset);
            var block = ReadBlock(file, path, handle, footerStart, "data block", ref budget);
            var first = result.Count;
            ParseBlock(path, block, result, maxEntryCount, maxKeyLength, "data block");
            for (var i = first; i < result.Count; i++)
            {
                var key = result[i].Key;
                if (previous is not null)
                {
                    var cmp = key.AsSpan().SequenceCompareTo(previous);
                    if (cmp <= 0)
                        ThrowHelper.Format(cmp == 0 ? CheckpointFormatError.DuplicateKey : CheckpointFormatError.UnsortedKeys, path,
                            cmp == 0 ? "duplicate key in the table" : "table keys are not in increasing byte order",
                            key: CheckpointKeys.ToDisplay(key), offset: result[i].FileOffset);
                }
                previous = key;
            }
            // The index key must be ≥ every key of its block, or TF's lookups would miss entries.
            if (result.Count > first && ie.Key.AsSpan().SequenceCompareTo(result[^1].Key) < 0)
                ThrowHelper.Format(CheckpointFormatError.UnsortedKeys, path, "index block key is smaller than the last key of its data block",
                    key: CheckpointKeys.ToDisplay(result[^1].Key), offset: handle.Offset);
        }
        return result;
    }

    private static bool TryDecodeHandle(ReadOnlySpan<byte> src, ref int pos, out (long Offset, long Size) handle)
    {
        handle = default;
        if (!Varint.TryRead64(src, ref pos, out var off) || !Varint.TryRead64(src, ref pos, out var size)) return false;
        if (off > long.MaxValue || size > long.MaxValue) return false;
        handle = ((long)off, (long)size);
        return true;
    }

    /// <summary>A block's contents and where they came from.</summary>
    private readonly record struct Block(ArraySegment<byte> Contents, long FileOffset, bool Compressed)
    {
        /// <summary>File offset for an error at <paramref name="contentOffset"/> within the contents (the block start when compressed).</summary>
        public long Where(int contentOffset) => Compressed ? FileOffset : Contents.Offset + contentOffset;
    }

    /// <summary>Checks a block handle against the file, verifies the trailer, returns the (decompressed) contents.</summary>
    private static Block ReadBlock(byte[] file, string path, (long Offset, long Size) h, int limit, string what, ref long decompressBudget)
    {
        // The block and its 5-byte trailer must lie before the footer.
        if (h.Offset < 0 || h.Size < 0 || h.Offset > limit || h.Size > limit - h.Offset - TableFormat.BlockTrailerLength)
            ThrowHelper.Format(CheckpointFormatError.InvalidOffset, path, what + " handle points outside the file", offset: h.Offset, length: h.Size,
                comparison: $"blocks must end before offset {limit}");
        var off = (int)h.Offset;
        var size = (int)h.Size;
        var type = file[off + size];
        var stored = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(off + size + 1));
        // format.cc: crc32c over the stored block contents and the type byte (table_builder.cc WriteRawBlock).
        var crc = MaskedCrc32C.Extend(MaskedCrc32C.Compute(file.AsSpan(off, size)), file.AsSpan(off + size, 1));
        if (MaskedCrc32C.Mask(crc) != stored)
            ThrowHelper.ChecksumMismatch(path, what, null, null, off, size, stored, MaskedCrc32C.Mask(crc));
        if (type == TableFormat.SnappyCompression)
            return new Block(Decompress(file.AsSpan(off, size), path, what, off, ref decompressBudget), off, Compressed: true);
        if (type != TableFormat.NoCompression)
            ThrowHelper.Format(CheckpointFormatError.BadBlockTrailer, path, what + " has an unknown compression type", offset: off, length: size,
                comparison: $"expected 0 (none) or 1 (Snappy), found {type}");
        return new Block(new ArraySegment<byte>(file, off, size), off, Compressed: false);
    }

    /// <summary>
    /// Decompresses one Snappy block (Snappier, a port of Google's snappy). The varint length preamble is checked before
    /// the output is allocated: against <paramref name="budget"/> (what is left of the caller's limit) and against
    /// <see cref="MaxSnappyExpansion"/> times the compressed size, so a few hostile bytes cannot request gigabytes.
    /// </summary>
    private static ArraySegment<byte> Decompress(ReadOnlySpan<byte> compressed, string path, string what, int offset, ref long budget)
    {
        var pos = 0;
        if (!Varint.TryRead32(compressed, ref pos, out var length))
            ThrowHelper.Format(CheckpointFormatError.MalformedBlock, path, what + " is Snappy-compressed but its length preamble is malformed",
                offset: offset, length: compressed.Length);
        var bound = Math.Min(budget, (long)MaxSnappyExpansion * compressed.Length);
        if (length > bound)
            ThrowHelper.Format(length > budget ? CheckpointFormatError.LimitExceeded : CheckpointFormatError.MalformedBlock, path,
                what + (length > budget ? " decompresses to more bytes than the index limit allows" : " claims a decompressed length Snappy cannot produce from its size"),
                offset: offset, length: compressed.Length,
                comparison: $"declared {length} bytes, at most {bound} allowed (limit {budget} bytes left, {MaxSnappyExpansion}x the {compressed.Length} stored bytes)");
        var output = new byte[length];
        int written;
        try
        {
            written = Snappier.Snappy.Decompress(compressed, output);
        }
        catch (Exception ex) when (ex is InvalidDataException or ArgumentException or InvalidOperationException or IndexOutOfRangeException)
        {
            // Snappier reports corrupt input as InvalidDataException; the others are defence in depth for hostile bytes.
            return ThrowHelper.Format<ArraySegment<byte>>(CheckpointFormatError.MalformedBlock, path, what + " has corrupt Snappy-compressed contents",
                offset: offset, length: compressed.Length, comparison: ex.Message, inner: ex);
        }
        if (written != length)
            ThrowHelper.Format(CheckpointFormatError.MalformedBlock, path, what + " has corrupt Snappy-compressed contents", offset: offset, length: compressed.Length,
                comparison: $"preamble declares {length} bytes, decompressed {written}");
        budget -= length;
        return new ArraySegment<byte>(output, 0, (int)length);
    }

    private static void ParseBlock(string path, Block block, List<TableEntry> output, int maxEntryCount, int maxKeyLength, string what)
    {
        var data = block.Contents.AsSpan();
        var buffer = block.Contents.Array!;
        var baseOffset = block.Contents.Offset;
        if (block.Compressed) what += $" (Snappy-compressed at offset {block.FileOffset}; offsets below are within the decompressed block)";
        if (data.Length < 4)
            ThrowHelper.Format(CheckpointFormatError.MalformedBlock, path, what + " is shorter than its restart count", offset: baseOffset, length: data.Length);
        var numRestarts = BinaryPrimitives.ReadUInt32LittleEndian(data[^4..]);
        if (numRestarts > (uint)(data.Length - 4) / 4)
            ThrowHelper.Format(CheckpointFormatError.MalformedBlock, path, what + " restart count exceeds the block", offset: baseOffset, length: data.Length,
                comparison: $"at most {(data.Length - 4) / 4} restarts fit, found {numRestarts}");
        var restartsStart = data.Length - 4 - (4 * (int)numRestarts);
        if (numRestarts == 0 && restartsStart != 0)
            ThrowHelper.Format(CheckpointFormatError.MalformedBlock, path, what + " has entries but no restart points", offset: baseOffset, length: data.Length);

        var restartIndex = 0;
        var pos = 0;
        var prevKey = Array.Empty<byte>();
        while (pos < restartsStart)
        {
            var entryStart = pos;
            var span = data[..restartsStart];
            uint shared = 0, nonShared = 0, valueLen = 0;
            if (!Varint.TryRead32(span, ref pos, out shared) || !Varint.TryRead32(span, ref pos, out nonShared) || !Varint.TryRead32(span, ref pos, out valueLen))
                ThrowHelper.Format(CheckpointFormatError.MalformedBlock, path, what + " entry header is truncated", offset: baseOffset + entryStart);
            if (shared > prevKey.Length)
                ThrowHelper.Format(CheckpointFormatError.MalformedBlock, path, what + " entry shares more key bytes than the previous key has", offset: baseOffset + entryStart,
                    comparison: $"previous key length {prevKey.Length}, shared {shared}");
            if ((ulong)nonShared + valueLen > (ulong)(restartsStart - pos))
                ThrowHelper.Format(CheckpointFormatError.MalformedBlock, path, what + " entry runs past the end of the block", offset: baseOffset + entryStart,
                    length: (long)nonShared + valueLen);
            if (shared + (ulong)nonShared > (ulong)maxKeyLength)
                ThrowHelper.Format(CheckpointFormatError.LimitExceeded, path, what + " key is longer than MaxKeyLength", offset: baseOffset + entryStart,
                    comparison: $"limit {maxKeyLength}, found {shared + (ulong)nonShared}");
            // Restart points must be exactly the entries that share nothing, in order.
            var isRestart = restartIndex < numRestarts && BinaryPrimitives.ReadUInt32LittleEndian(data[(restartsStart + (4 * restartIndex))..]) == (uint)entryStart;
            if (isRestart) restartIndex++;
            if (entryStart == 0 && !isRestart)
                ThrowHelper.Format(CheckpointFormatError.MalformedBlock, path, what + " first restart point is not offset 0", offset: baseOffset);
            if (isRestart && shared != 0)
                ThrowHelper.Format(CheckpointFormatError.MalformedBlock, path, what + " entry at a restart point shares key bytes", offset: baseOffset + entryStart);

            var key = new byte[shared + nonShared];
            prevKey.AsSpan(0, (int)shared).CopyTo(key);
            data.Slice(pos, (int)nonShared).CopyTo(key.AsSpan((int)shared));
            pos += (int)nonShared;
            if (output.Count >= maxEntryCount)
                ThrowHelper.Format(CheckpointFormatError.LimitExceeded, path, "table has more entries than MaxEntryCount", comparison: $"limit {maxEntryCount}");
            output.Add(new TableEntry(key, new ArraySegment<byte>(buffer, baseOffset + pos, (int)valueLen), block.Where(pos)));
            pos += (int)valueLen;
            prevKey = key;
        }
        // An empty block (TF's metaindex) keeps its single restart at offset 0 = the restart array itself.
        if (restartsStart > 0 && restartIndex != numRestarts)
            ThrowHelper.Format(CheckpointFormatError.MalformedBlock, path, what + " restart array does not match its entries", offset: baseOffset, length: data.Length,
                comparison: $"{numRestarts} restarts declared, {restartIndex} matched entry offsets");
    }
}

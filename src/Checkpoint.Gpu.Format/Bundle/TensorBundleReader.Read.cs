using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace CheckpointGpu.Format;

public sealed partial class TensorBundleReader
{
    private const int DefaultChunkBytes = 4 << 20;
    private const int MaxSpanChunkBytes = 1 << 30;

    private bool NeedsSwap => (Header.Endianness == BundleEndianness.Big) == BitConverter.IsLittleEndian;

    /// <summary>
    /// Reads a fixed-size tensor into <paramref name="destination"/> (exactly <see cref="BundleEntry.Size"/> bytes),
    /// verifies its masked CRC32C, then byte-swaps the elements if the file is big-endian.
    /// </summary>
    /// <param name="entry">An entry of this bundle with a fixed-size dtype.</param>
    /// <param name="destination">Receives the elements, row-major, host byte order; length must equal <c>entry.Size</c>.</param>
    /// <exception cref="ArgumentException">The dtype is not fixed-size, the entry is partitioned, or the length differs from <c>entry.Size</c>.</exception>
    /// <exception cref="CheckpointFormatException">The data file is too short or the checksum does not match.</exception>
    /// <exception cref="FileNotFoundException">The data file is missing.</exception>
    public void ReadTensor(BundleEntry entry, Span<byte> destination)
    {
        RequireFixedSize(entry);
        if (destination.Length != entry.Size)
            throw new ArgumentException($"Destination is {destination.Length} bytes but '{entry.Key}' holds {entry.Size} bytes.", nameof(destination));
        if (entry.Compression is not null)
        {
            unsafe
            {
                fixed (byte* p = destination) ReadTensor(entry, (nint)p, destination.Length);
            }
            return;
        }
        var (handle, path) = Locate(entry);
        var crc = 0u;
        long done = 0;
        while (done < entry.Size)
        {
            var n = (int)Math.Min(DefaultChunkBytes, entry.Size - done);
            var part = destination.Slice((int)done, n);
            ReadExactly(handle, part, entry.Offset + done, path, entry);
            if (_options.VerifyChecksums) crc = MaskedCrc32C.Extend(crc, part);
            done += n;
        }
        CheckCrc(entry, path, crc);
        if (NeedsSwap) SwapInPlace(destination, DTypes.GetSwapUnit(entry.DType));
    }

    /// <summary>
    /// Streams a fixed-size tensor of any size (also &gt; 2 GiB) to <paramref name="handler"/> in chunks, in order.
    /// Chunks are byte-swapped for big-endian files. The CRC covers the whole payload and is checked after
    /// the last chunk: on mismatch the handler has already seen the bytes and this method throws.
    /// </summary>
    /// <param name="entry">An entry of this bundle with a fixed-size dtype.</param>
    /// <param name="handler">Receives each chunk and its byte offset in the tensor.</param>
    /// <param name="chunkSizeInBytes">Chunk size in bytes, rounded down to a multiple of 16 (at least 16). Default 4 MiB.</param>
    /// <exception cref="ArgumentException">The dtype is not fixed-size or the entry is partitioned.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="chunkSizeInBytes"/> is less than 16.</exception>
    /// <exception cref="CheckpointFormatException">The data file is too short or the checksum does not match.</exception>
    /// <exception cref="FileNotFoundException">The data file is missing.</exception>
    public void ReadTensor(BundleEntry entry, TensorChunkHandler handler, int chunkSizeInBytes = DefaultChunkBytes)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkSizeInBytes, 16);
        RequireFixedSize(entry);
        var unit = NeedsSwap ? DTypes.GetSwapUnit(entry.DType) : 1;
        if (entry.Compression is not null)
        {
            // Issue 14: chunks are the compressed entry's blocks (BundleCompression).
            ReadCompressed(entry, (chunk, offset) =>
            {
                if (unit > 1) SwapInPlace(chunk, unit);
                handler(chunk, offset);
            });
            return;
        }
        var crc = 0u;
        StreamRegion(entry, chunkSizeInBytes & ~15, (chunk, offset) =>
        {
            if (_options.VerifyChecksums) crc = MaskedCrc32C.Extend(crc, chunk);
            if (unit > 1) SwapInPlace(chunk, unit);
            handler(chunk, offset);
        }, out var path);
        CheckCrc(entry, path, crc);
    }

    /// <summary>
    /// Reads a fixed-size tensor of any size into native memory (e.g. pinned or device-mapped host memory),
    /// in chunks, verifying the CRC before byte-swapping big-endian data.
    /// </summary>
    /// <param name="entry">An entry of this bundle with a fixed-size dtype.</param>
    /// <param name="destination">Start of at least <paramref name="lengthInBytes"/> writable bytes; not retained.</param>
    /// <param name="lengthInBytes">Must equal <c>entry.Size</c>.</param>
    /// <exception cref="ArgumentException">Wrong dtype kind, partitioned entry, null pointer or length mismatch.</exception>
    /// <exception cref="CheckpointFormatException">The data file is too short or the checksum does not match.</exception>
    /// <exception cref="FileNotFoundException">The data file is missing.</exception>
    public unsafe void ReadTensor(BundleEntry entry, nint destination, long lengthInBytes)
    {
        RequireFixedSize(entry);
        if (lengthInBytes != entry.Size)
            throw new ArgumentException($"Destination is {lengthInBytes} bytes but '{entry.Key}' holds {entry.Size} bytes.", nameof(lengthInBytes));
        if (destination == 0 && lengthInBytes > 0) throw new ArgumentException("Destination pointer is null.", nameof(destination));
        if (entry.Compression is not null)
        {
            // Issue 14: every block lands inside [destination, destination + Size): BundleCompression bounds each one.
            var swap = NeedsSwap ? DTypes.GetSwapUnit(entry.DType) : 1;
            ReadCompressed(entry, (chunk, offset) =>
            {
                if (swap > 1) SwapInPlace(chunk, swap);
                chunk.CopyTo(new Span<byte>((byte*)destination + offset, chunk.Length));
            });
            return;
        }
        var (handle, path) = Locate(entry);
        var crc = 0u;
        long done = 0;
        while (done < lengthInBytes)
        {
            var n = (int)Math.Min(DefaultChunkBytes, lengthInBytes - done);
            var part = new Span<byte>((byte*)destination + done, n);
            ReadExactly(handle, part, entry.Offset + done, path, entry);
            if (_options.VerifyChecksums) crc = MaskedCrc32C.Extend(crc, part);
            done += n;
        }
        CheckCrc(entry, path, crc);
        if (NeedsSwap)
        {
            var unit = DTypes.GetSwapUnit(entry.DType);
            for (long p = 0; p < lengthInBytes; p += MaxSpanChunkBytes)
                SwapInPlace(new Span<byte>((byte*)destination + p, (int)Math.Min(MaxSpanChunkBytes, lengthInBytes - p)), unit);
        }
    }

    /// <summary>
    /// Reads a DT_STRING tensor: every element as raw bytes (never decoded as text), row-major. Verifies the
    /// length checksum and the entry CRC (spec section 4.3).
    /// </summary>
    /// <param name="entry">A DT_STRING entry of this bundle.</param>
    /// <returns>One array per element.</returns>
    /// <exception cref="ArgumentException">The entry is not DT_STRING or is partitioned.</exception>
    /// <exception cref="CheckpointFormatException">Malformed lengths, limits exceeded (<see cref="TensorBundleReaderOptions.MaxStringElementBytes"/>, <see cref="TensorBundleReaderOptions.MaxStringElementCount"/>), truncated data or checksum mismatch.</exception>
    /// <exception cref="FileNotFoundException">The data file is missing.</exception>
    public byte[][] ReadStrings(BundleEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        if (entry.DType != DType.String) throw new ArgumentException($"'{entry.Key}' is {DTypes.GetName(entry.DType)}, not string.", nameof(entry));
        RequireUnpartitioned(entry);
        var decoder = Decode(entry, collectStrings: true, handler: null);
        return decoder?.Strings ?? [];
    }

    /// <summary>
    /// Streams the stored payload bytes exactly as they are in the data file (no byte swap), verifying the
    /// checksum with the dtype's algorithm: fixed-size, DT_STRING (lengths + length checksum + bytes) or
    /// DT_VARIANT (per-element checksums). Used to copy tensors between bundles unchanged.
    /// </summary>
    /// <param name="entry">An unpartitioned entry of this bundle.</param>
    /// <param name="handler">Receives each chunk and its offset in the payload.</param>
    /// <exception cref="ArgumentException">The entry is partitioned.</exception>
    /// <exception cref="CheckpointFormatException">Malformed payload, truncated data or checksum mismatch (thrown after the last chunk for whole-payload CRCs).</exception>
    /// <exception cref="FileNotFoundException">The data file is missing.</exception>
    public void ReadEncodedPayload(BundleEntry entry, TensorChunkHandler handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ArgumentNullException.ThrowIfNull(entry);
        RequireUnpartitioned(entry);
        _ = Decode(entry, collectStrings: false, handler);
    }

    /// <summary>
    /// Copies raw stored bytes of an entry's payload without checksum verification (positional, for
    /// pull-style copying; pair with a writer that re-verifies, or with <see cref="VerifyEntry"/>).
    /// </summary>
    /// <param name="entry">An unpartitioned entry of this bundle.</param>
    /// <param name="offsetInTensor">Byte offset within the payload.</param>
    /// <param name="destination">Receives <c>destination.Length</c> bytes; the range must lie within the payload.</param>
    /// <exception cref="ArgumentOutOfRangeException">The range is outside the payload.</exception>
    /// <exception cref="CheckpointFormatException">The data file is shorter than the entry.</exception>
    /// <exception cref="FileNotFoundException">The data file is missing.</exception>
    public void ReadRawBytes(BundleEntry entry, long offsetInTensor, Span<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(entry);
        RequireUnpartitioned(entry);
        if (entry.Compression is not null)
            throw new NotSupportedException($"'{entry.Key}' is compressed (issue 14): its stored bytes are not the tensor's; read it with ReadTensor.");
        ArgumentOutOfRangeException.ThrowIfNegative(offsetInTensor);
        if (offsetInTensor > entry.Size - destination.Length)
            throw new ArgumentOutOfRangeException(nameof(offsetInTensor), $"Range {offsetInTensor}+{destination.Length} is outside the {entry.Size}-byte payload of '{entry.Key}'.");
        var (handle, path) = Locate(entry);
        ReadExactly(handle, destination, entry.Offset + offsetInTensor, path, entry);
    }

    /// <summary>
    /// Reads an entry's payload and checks it (bounds, structure, CRC) without returning it. Partitioned
    /// full-tensor entries have no payload; their slice entries are verified separately.
    /// </summary>
    /// <param name="entry">An entry of this bundle.</param>
    /// <exception cref="CheckpointFormatException">The entry is corrupt.</exception>
    /// <exception cref="FileNotFoundException">The data file is missing.</exception>
    public void VerifyEntry(BundleEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        if (entry.IsPartitioned) return;
        _ = Decode(entry, collectStrings: false, handler: null);
    }

    private PayloadDecoder? Decode(BundleEntry entry, bool collectStrings, TensorChunkHandler? handler)
    {
        if (entry.Compression is not null)
        {
            // Issue 14: the encoded payload of a compressed entry is its decompressed (plain) payload; both CRCs are checked.
            ReadCompressed(entry, (chunk, offset) => handler?.Invoke(chunk, offset));
            return null;
        }
        var path = GetDataFilePath(CheckShardId(entry));
        var elements = entry.Shape.ElementCount; // validated at open; throws OverflowException only for foreign entries
        var fileOffset = entry.Offset;
        var decoder = new PayloadDecoder(entry.DType, elements, new PayloadLocation(path, entry.Key, entry.ShardId, fileOffset, entry.Size),
            bigEndian: Header.Endianness == BundleEndianness.Big, _options.VerifyChecksums, collectStrings,
            _options.MaxStringElementBytes, _options.MaxStringElementCount);
        StreamRegion(entry, DefaultChunkBytes, (chunk, offset) =>
        {
            decoder.Feed(chunk);
            handler?.Invoke(chunk, offset);
        }, out _);
        var crc = decoder.Complete();
        if (_options.VerifyChecksums && crc != entry.Crc32C)
            ThrowHelper.ChecksumMismatch(path, "tensor", entry.Key, entry.ShardId, entry.Offset, entry.Size, entry.Crc32C, crc);
        return decoder;
    }

    private delegate void ChunkAction(Span<byte> chunk, long offsetInTensor);

    /// <summary>Issue 14: decompresses a compressed entry block by block (<see cref="BundleCompression"/>).</summary>
    private void ReadCompressed(BundleEntry entry, BlockSink handler)
    {
        var (handle, path) = Locate(entry);
        BundleCompression.Decompress(entry, path, (fileOffset, destination) => ReadExactly(handle, destination, fileOffset, path, entry),
            handler, _options.VerifyChecksums);
    }

    private void StreamRegion(BundleEntry entry, int chunkSize, ChunkAction action, out string path)
    {
        var (handle, p) = Locate(entry);
        path = p;
        var size = entry.Size;
        var buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min(chunkSize, Math.Max(size, 16)));
        try
        {
            var chunk = (int)Math.Min(chunkSize, buffer.Length) & ~15;
            long done = 0;
            while (done < size)
            {
                var n = (int)Math.Min(chunk, size - done);
                var span = buffer.AsSpan(0, n);
                ReadExactly(handle, span, entry.Offset + done, path, entry);
                action(span, done);
                done += n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private int CheckShardId(BundleEntry entry)
    {
        if (entry.ShardId < 0 || entry.ShardId >= Header.ShardCount)
            ThrowHelper.Format(CheckpointFormatError.InvalidShardId, IndexPath, "entry names a data shard that does not exist", entry.Key, entry.ShardId,
                comparison: $"expected 0 <= shard_id < {Header.ShardCount}, found {entry.ShardId}");
        return entry.ShardId;
    }

    /// <summary>Checks the entry lies within its data file; returns the open handle and the file path.</summary>
    private (SafeFileHandle Handle, string Path) Locate(BundleEntry entry)
    {
        var shardId = CheckShardId(entry);
        var (handle, length) = GetShard(shardId, entry.Key);
        var path = GetDataFilePath(shardId);
        var size = entry.StoredSize;   // issue 14: bytes in the file (compressed entries)
        if (entry.Offset < 0 || size < 0 || entry.Offset > long.MaxValue - size)
            ThrowHelper.Format(CheckpointFormatError.InvalidOffset, path, "entry has an invalid offset or size", entry.Key, shardId, entry.Offset, size);
        if (entry.Offset + size > length)
            ThrowHelper.Format(CheckpointFormatError.TruncatedData, path, "entry extends past the end of the data file", entry.Key, shardId, entry.Offset, size,
                $"needs {entry.Offset + size} bytes, file has {length}");
        return (handle, path);
    }

    private static void ReadExactly(SafeFileHandle handle, Span<byte> destination, long fileOffset, string path, BundleEntry entry)
    {
        while (!destination.IsEmpty)
        {
            var n = RandomAccess.Read(handle, destination, fileOffset);
            if (n <= 0)
                ThrowHelper.Format(CheckpointFormatError.TruncatedData, path, "data file ended early (truncated while open?)", entry.Key, entry.ShardId,
                    fileOffset, destination.Length);
            destination = destination[n..];
            fileOffset += n;
        }
    }

    private void CheckCrc(BundleEntry entry, string path, uint crc)
    {
        if (!_options.VerifyChecksums) return;
        var computed = MaskedCrc32C.Mask(crc);
        if (computed != entry.Crc32C)
            ThrowHelper.ChecksumMismatch(path, "tensor", entry.Key, entry.ShardId, entry.Offset, entry.Size, entry.Crc32C, computed);
    }

    private static void RequireUnpartitioned(BundleEntry entry)
    {
        if (entry.IsPartitioned)
            throw new ArgumentException($"'{entry.Key}' is a partitioned tensor with {entry.Slices.Count} slices and no payload of its own; read its slice entries.", nameof(entry));
    }

    private static void RequireFixedSize(BundleEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        RequireUnpartitioned(entry);
        if (!DTypes.IsFixedSize(entry.DType))
            throw new ArgumentException($"'{entry.Key}' is {DTypes.GetName(entry.DType)}, which is not a fixed-size dtype; use ReadStrings or ReadEncodedPayload.", nameof(entry));
        var width = DTypes.GetElementSize(entry.DType);
        if (!entry.Shape.TryGetElementCount(out var n) || n > long.MaxValue / width || n * width != entry.Size)
            throw new ArgumentException($"'{entry.Key}' size {entry.Size} does not match {DTypes.GetName(entry.DType)} {entry.Shape}.", nameof(entry));
    }

    /// <summary>Reverses the byte order of each <paramref name="unit"/>-byte element in place (spec section 4.7).</summary>
    internal static void SwapInPlace(Span<byte> data, int unit)
    {
        switch (unit)
        {
            case 2:
                var u16 = MemoryMarshal.Cast<byte, ushort>(data);
                BinaryPrimitives.ReverseEndianness(u16, u16);
                break;
            case 4:
                var u32 = MemoryMarshal.Cast<byte, uint>(data);
                BinaryPrimitives.ReverseEndianness(u32, u32);
                break;
            case 8:
                var u64 = MemoryMarshal.Cast<byte, ulong>(data);
                BinaryPrimitives.ReverseEndianness(u64, u64);
                break;
        }
    }
}

using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using CheckpointGpu.Format.Protos;
using K4os.Compression.LZ4;

namespace CheckpointGpu.Format;

/// <summary>Receives one decompressed block (mutable, valid during the call) and its byte offset in the tensor.</summary>
internal delegate void BlockSink(Span<byte> block, long offsetInTensor);

/// <summary>Settings of LZ4 tensor compression (issue 14; <c>TensorBundleWriterOptions.Compression</c>).</summary>
/// <remarks>Immutable (init-only); safe to share.</remarks>
public sealed class BundleCompressionOptions
{
    /// <summary>Split the bytes of each element of floating-point dtypes (float16/bfloat16/float32/float64, complex) into byte planes before LZ4, as Blosc's shuffle filter does. Default true.</summary>
    public bool Shuffle { get; init; } = true;

    /// <summary>Uncompressed bytes per independently compressed block, a multiple of 16 in [64 KiB, 64 MiB]. Blocks are compressed in parallel. Default 1 MiB.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Outside the range or not a multiple of 16.</exception>
    public int BlockSizeInBytes
    {
        get => _blockSize;
        init
        {
            if (value is < BundleCompression.MinBlockSize or > BundleCompression.MaxBlockSize || value % 16 != 0)
                throw new ArgumentOutOfRangeException(nameof(value), value, "Block size must be a multiple of 16 in [64 KiB, 64 MiB].");
            _blockSize = value;
        }
    }

    private readonly int _blockSize = 1 << 20;

    /// <summary>Tensors smaller than this many bytes are stored plain (no gain worth the block header). Default 4096.</summary>
    public long MinTensorBytes { get; init; } = 4096;

    /// <summary>Threads compressing the blocks of one tensor. Default <see cref="Environment.ProcessorCount"/>.</summary>
    public int MaxDegreeOfParallelism { get; init; } = Environment.ProcessorCount;

    /// <summary>The defaults.</summary>
    public static BundleCompressionOptions Default { get; } = new();
}

/// <summary>How one entry's payload is stored (issue 14): codec, stored byte count, block size, shuffle and the CRC of the stored bytes.</summary>
/// <param name="Codec">1 = LZ4 blocks (<see cref="BundleCompression.Lz4Blocks"/>).</param>
/// <param name="StoredSize">Bytes in the data file, in bytes.</param>
/// <param name="BlockSizeInBytes">Uncompressed bytes per block (the last may be shorter).</param>
/// <param name="ShuffleWidth">Byte planes per element (the dtype's width) when shuffled; 0 when not.</param>
/// <param name="StoredCrc32C">Masked CRC32C of the stored bytes.</param>
public sealed record BundleEntryCompression(int Codec, long StoredSize, int BlockSizeInBytes, int ShuffleWidth, uint StoredCrc32C);

/// <summary>
/// LZ4 compression of tensor payloads in a bundle (issue 14), written so that TensorFlow refuses such a bundle instead
/// of misreading it.
/// </summary>
/// <remarks>
/// <para><b>Refusal by TensorFlow.</b> A bundle with compressed entries has header version producer = min_consumer =
/// <see cref="BundleHeader.CompressedVersion"/> (2). TensorFlow's <c>BundleReader</c> constructor
/// (<c>tensorflow/core/util/tensor_bundle/tensor_bundle.cc</c>) ends with
/// <c>CheckVersions(header.version(), kTensorBundleVersion, kTensorBundleMinProducer, "Checkpoint", "checkpoint")</c>
/// where <c>kTensorBundleVersion = 1</c>; <c>CheckVersions</c> (<c>tensorflow/core/framework/versions.cc</c>) returns
/// InvalidArgument "Checkpoint min consumer version 2 above current version 1 for TensorFlow &lt;version&gt;. Please
/// upgrade TensorFlow." whenever <c>versions.min_consumer() &gt; consumer</c>. Every lookup then fails with that
/// status (<c>TF_CHECK_OK(status_)</c>, <c>BundleReader::status()</c> is checked by <c>RestoreV2</c>), so no tensor is read.
/// <c>ckpt convert</c> turns such a bundle back into a plain one TensorFlow reads.</para>
/// <para><b>Where the per-entry information lives.</b> In field 1001 of <c>BundleEntryProto</c>
/// (<c>BundleEntryCompressionProto</c>, our <c>tensor_bundle.proto</c>), unknown to TensorFlow. It is present only in
/// compressed bundles; plain bundles never set it, so their index is byte-identical to TensorFlow's and TensorFlow's
/// parser never sees the field in a file it accepts. With it, the entry's <c>size</c> is the stored byte count and
/// <c>crc32c</c> stays the masked CRC32C of the uncompressed tensor bytes (so a compressed entry and its plain
/// conversion carry the same checksum).</para>
/// <para><b>Stored layout</b> of a compressed payload: the tensor's bytes are cut into blocks of
/// <c>block_size</c> uncompressed bytes (the last one shorter); for each block, a little-endian <c>uint32</c> word
/// then the block's stored bytes. Bits 0–30 of the word are the stored length; bit 31 set means the block is stored
/// raw (LZ4 did not shrink it). A compressed block is one LZ4 block (no frame) of the block's bytes after the optional
/// byte shuffle (plane <c>j</c> holds byte <c>j</c> of every element of the block).</para>
/// <para><b>Bounds.</b> The declared uncompressed size must equal elements × dtype width and the stored size may not
/// exceed LZ4's worst case for it; both are checked when the index is parsed, before any allocation. While decoding,
/// each block's stored length is checked against the remaining stored bytes and LZ4's bound for the block, and each
/// block must decode to exactly its expected length; anything else is a <see cref="CheckpointFormatException"/>
/// naming the data file, the key and the file offset of the block.</para>
/// </remarks>
public static class BundleCompression
{
    /// <summary>Codec id of LZ4 blocks.</summary>
    public const int Lz4Blocks = 1;

    internal const int MinBlockSize = 64 << 10;
    internal const int MaxBlockSize = 64 << 20;
    private const uint RawFlag = 0x8000_0000u;

    /// <summary>Whether the dtype is floating point (the shuffle filter applies to these).</summary>
    /// <param name="dtype">Element type.</param>
    /// <returns>True for float16, bfloat16, float32, float64, complex64, complex128.</returns>
    public static bool IsFloatingPoint(DType dtype) => dtype is DType.Half or DType.BFloat16 or DType.Float or DType.Double or DType.Complex64 or DType.Complex128;

    /// <summary>Worst-case stored size of <paramref name="uncompressed"/> bytes in <paramref name="blockSize"/> blocks, in bytes.</summary>
    internal static long MaxStoredSize(long uncompressed, int blockSize)
    {
        var blocks = uncompressed == 0 ? 0 : (uncompressed + blockSize - 1) / blockSize;
        // A block is never stored larger than raw (the raw flag), plus its 4-byte word.
        return uncompressed + blocks * 4;
    }

    internal static void ToProto(BundleEntryProto proto, BundleEntryCompression c)
    {
        // The entry's Size is the uncompressed size; on disk, size is the stored byte count (see the remarks).
        var uncompressed = proto.Size;
        proto.Size = c.StoredSize;
        proto.CheckpointGpuCompression = new BundleEntryCompressionProto
        {
            Codec = c.Codec,
            UncompressedSize = uncompressed,
            BlockSize = c.BlockSizeInBytes,
            ShuffleWidth = c.ShuffleWidth,
            StoredCrc32C = c.StoredCrc32C,
        };
    }

    /// <summary>Validates a parsed extension against the entry (index parse time, before any allocation).</summary>
    internal static BundleEntryCompression Parse(BundleEntryCompressionProto c, BundleEntryProto proto, DType dtype, TensorShape shape, long elements,
        int width, BundleHeader header, string path, string key)
    {
        if (header.MinConsumer < BundleHeader.CompressedVersion)
            ThrowHelper.Format(CheckpointFormatError.UnsupportedCompression, path, "compressed entry in a bundle whose header does not declare compression (min_consumer < 2)", key,
                proto.ShardId, proto.Offset, proto.Size);
        if (c.Codec != Lz4Blocks)
            ThrowHelper.Format(CheckpointFormatError.UnsupportedCompression, path, "entry uses an unknown compression codec", key, proto.ShardId, proto.Offset, proto.Size,
                $"codec {c.Codec}");
        if (width == 0 || proto.Slices.Count > 0)
            ThrowHelper.Format(CheckpointFormatError.UnsupportedCompression, path, "only whole fixed-size tensors can be compressed", key, proto.ShardId, proto.Offset, proto.Size,
                $"{DTypes.GetName(dtype)} {shape}");
        if (elements > long.MaxValue / width || elements * width != c.UncompressedSize)
            ThrowHelper.Format(CheckpointFormatError.SizeMismatch, path, "compressed entry's declared size does not match its dtype and shape", key, proto.ShardId, proto.Offset,
                proto.Size, $"expected {(elements > long.MaxValue / width ? "overflow" : (elements * width).ToString(System.Globalization.CultureInfo.InvariantCulture))} bytes ({DTypes.GetName(dtype)} {shape}), declared {c.UncompressedSize}");
        if (c.BlockSize is < MinBlockSize or > MaxBlockSize || c.BlockSize % 16 != 0)
            ThrowHelper.Format(CheckpointFormatError.UnsupportedCompression, path, "compressed entry has an invalid block size", key, proto.ShardId, proto.Offset, proto.Size,
                $"block size {c.BlockSize}");
        if (c.ShuffleWidth != 0 && c.ShuffleWidth != width)
            ThrowHelper.Format(CheckpointFormatError.UnsupportedCompression, path, "compressed entry's shuffle width differs from its dtype width", key, proto.ShardId, proto.Offset,
                proto.Size, $"shuffle {c.ShuffleWidth}, width {width}");
        if (proto.Size > MaxStoredSize(c.UncompressedSize, c.BlockSize))
            ThrowHelper.Format(CheckpointFormatError.SizeMismatch, path, "compressed entry is larger than its uncompressed bound", key, proto.ShardId, proto.Offset, proto.Size,
                $"at most {MaxStoredSize(c.UncompressedSize, c.BlockSize)} bytes");
        return new BundleEntryCompression(c.Codec, proto.Size, c.BlockSize, c.ShuffleWidth, c.StoredCrc32C);
    }

    /// <summary>
    /// Compresses a whole tensor's bytes in parallel blocks. Returns null when compression would not make it smaller
    /// (the caller stores it plain).
    /// </summary>
    internal static byte[]? Compress(ReadOnlySpan<byte> data, DType dtype, BundleCompressionOptions options, out BundleEntryCompression info)
    {
        info = null!;
        if (data.Length < options.MinTensorBytes || data.Length == 0) return null;
        var width = DTypes.GetElementSize(dtype);
        var shuffle = options.Shuffle && width > 1 && IsFloatingPoint(dtype) ? width : 0;
        var blockSize = options.BlockSizeInBytes;
        var blocks = (int)((data.Length + (long)blockSize - 1) / blockSize);
        var outputs = new byte[blocks][];
        var lengths = new int[blocks];
        var raw = new bool[blocks];
        var source = data.ToArray();   // Parallel.For cannot capture a span; one copy per tensor on this synchronous path
        Parallel.For(0, blocks, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, options.MaxDegreeOfParallelism) }, b =>
        {
            var start = (long)b * blockSize;
            var n = (int)Math.Min(blockSize, source.Length - start);
            var block = source.AsSpan((int)start, n);
            byte[]? shuffled = null;
            if (shuffle > 1)
            {
                shuffled = ArrayPool<byte>.Shared.Rent(n);
                Shuffle(block, shuffled.AsSpan(0, n), shuffle);
                block = shuffled.AsSpan(0, n);
            }
            var target = ArrayPool<byte>.Shared.Rent(LZ4Codec.MaximumOutputSize(n));
            var written = LZ4Codec.Encode(block, target, LZ4Level.L00_FAST);
            if (written <= 0 || written >= n)
            {
                ArrayPool<byte>.Shared.Return(target);
                raw[b] = true;
                outputs[b] = null!;   // copied from the source when assembling
                lengths[b] = n;
            }
            else
            {
                outputs[b] = target;
                lengths[b] = written;
            }
            if (shuffled is not null) ArrayPool<byte>.Shared.Return(shuffled);
        });
        long total = 0;
        for (var b = 0; b < blocks; b++) total += 4 + lengths[b];
        try
        {
            if (total >= data.Length) return null;
            var stored = new byte[total];
            var pos = 0;
            for (var b = 0; b < blocks; b++)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(stored.AsSpan(pos), (uint)lengths[b] | (raw[b] ? RawFlag : 0));
                var payload = raw[b] ? source.AsSpan((int)((long)b * blockSize), lengths[b]) : outputs[b].AsSpan(0, lengths[b]);
                payload.CopyTo(stored.AsSpan(pos + 4));
                pos += 4 + lengths[b];
            }
            info = new BundleEntryCompression(Lz4Blocks, total, blockSize, shuffle, MaskedCrc32C.ComputeMasked(stored));
            return stored;
        }
        finally
        {
            foreach (var o in outputs) if (o is not null) ArrayPool<byte>.Shared.Return(o);
        }
    }


    /// <summary>
    /// Decompresses a stored payload streamed by <paramref name="readStored"/> (file offset → bytes), handing each
    /// decompressed block to <paramref name="sink"/> with its offset in the tensor. Verifies the stored CRC and, when
    /// <paramref name="verify"/>, the CRC of the decompressed bytes.
    /// </summary>
    internal static void Decompress(BundleEntry entry, string path, Action<long, Span<byte>> readStored, BlockSink sink, bool verify)
    {
        var c = entry.Compression!;
        var blockSize = c.BlockSizeInBytes;
        var stored = ArrayPool<byte>.Shared.Rent(blockSize + 4);
        var output = ArrayPool<byte>.Shared.Rent(blockSize);
        var shuffled = c.ShuffleWidth > 1 ? ArrayPool<byte>.Shared.Rent(blockSize) : null;
        try
        {
            long inPos = 0;    // within the stored payload
            long outPos = 0;   // within the tensor
            uint storedCrc = 0, dataCrc = 0;
            Span<byte> word = stackalloc byte[4];
            while (outPos < entry.Size)
            {
                var expected = (int)Math.Min(blockSize, entry.Size - outPos);
                var blockOffset = entry.Offset + inPos;
                if (c.StoredSize - inPos < 4) Corrupt(entry, path, blockOffset, "the stored payload ends inside a block header");
                readStored(entry.Offset + inPos, word);
                storedCrc = MaskedCrc32C.Extend(storedCrc, word);
                var header = BinaryPrimitives.ReadUInt32LittleEndian(word);
                var isRaw = (header & RawFlag) != 0;
                var length = (long)(header & ~RawFlag);
                // Bound before reading: a raw block is exactly its size, a compressed one smaller; never beyond the payload.
                if ((isRaw ? length != expected : length >= expected || length == 0) || length > c.StoredSize - inPos - 4)
                    Corrupt(entry, path, blockOffset, $"block header declares {length} {(isRaw ? "raw" : "compressed")} bytes for a {expected}-byte block with {c.StoredSize - inPos - 4} stored bytes left");
                var block = stored.AsSpan(0, (int)length);
                readStored(entry.Offset + inPos + 4, block);
                storedCrc = MaskedCrc32C.Extend(storedCrc, block);
                var target = output.AsSpan(0, expected);
                if (isRaw)
                {
                    block.CopyTo(target);
                }
                else
                {
                    var dest = shuffled is null ? target : shuffled.AsSpan(0, expected);
                    int decoded;
                    try
                    {
                        decoded = LZ4Codec.Decode(block, dest);
                    }
                    catch (Exception ex) when (ex is ArgumentException or IndexOutOfRangeException or InvalidOperationException)
                    {
                        decoded = -1;
                    }
                    if (decoded != expected) Corrupt(entry, path, blockOffset, $"LZ4 block decodes to {decoded} bytes, expected {expected}");
                    if (shuffled is not null) Unshuffle(dest, target, c.ShuffleWidth);
                }
                if (verify) dataCrc = MaskedCrc32C.Extend(dataCrc, target);
                sink(target, outPos);
                inPos += 4 + length;
                outPos += expected;
            }
            if (inPos != c.StoredSize) Corrupt(entry, path, entry.Offset + inPos, $"{c.StoredSize - inPos} stored bytes follow the last block");
            if (MaskedCrc32C.Mask(storedCrc) != c.StoredCrc32C)
                ThrowHelper.ChecksumMismatch(path, "the compressed payload of", entry.Key, entry.ShardId, entry.Offset, c.StoredSize, c.StoredCrc32C, MaskedCrc32C.Mask(storedCrc));
            if (verify && MaskedCrc32C.Mask(dataCrc) != entry.Crc32C)
                ThrowHelper.ChecksumMismatch(path, "the decompressed tensor", entry.Key, entry.ShardId, entry.Offset, entry.Size, entry.Crc32C, MaskedCrc32C.Mask(dataCrc));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(stored);
            ArrayPool<byte>.Shared.Return(output);
            if (shuffled is not null) ArrayPool<byte>.Shared.Return(shuffled);
        }
    }

    private static void Corrupt(BundleEntry entry, string path, long offset, string detail) =>
        ThrowHelper.Format(CheckpointFormatError.MalformedBlock, path, "corrupt LZ4 block: " + detail, entry.Key, entry.ShardId, offset);

    /// <summary>Byte planes: <c>dst[j * count + i] = src[i * width + j]</c> (Blosc's shuffle).</summary>
    internal static unsafe void Shuffle(ReadOnlySpan<byte> src, Span<byte> dst, int width)
    {
        var count = src.Length / width;
        if (dst.Length < src.Length) throw new ArgumentException("Destination too short.", nameof(dst));
        // Bounds are checked once above; the pointer loops avoid a check per byte (this runs over every tensor byte).
        fixed (byte* s = src)
        fixed (byte* d = dst)
        {
            for (var j = 0; j < width; j++)
            {
                var plane = d + (long)j * count;
                var from = s + j;
                for (var i = 0; i < count; i++) plane[i] = from[(long)i * width];
            }
        }
        // A tail shorter than one element (never for whole tensors) is copied as is.
        src[(count * width)..].CopyTo(dst[(count * width)..]);
    }

    /// <summary>
    /// Inverse of <see cref="Shuffle"/>: <c>dst[i * width + j] = src[j * count + i]</c>. Element widths 2, 4 and 8 (the
    /// floating-point dtypes) interleave 16 elements per step with SSE2 byte/word/dword unpacks (one 16-byte load per
    /// plane, <c>width</c> 16-byte stores); other widths, the last <c>count % 16</c> elements and non-SSE2 hosts take
    /// the scalar loop (<see cref="UnshuffleScalar"/>).
    /// </summary>
    internal static unsafe void Unshuffle(ReadOnlySpan<byte> src, Span<byte> dst, int width)
    {
        var count = src.Length / width;
        if (dst.Length < src.Length) throw new ArgumentException("Destination too short.", nameof(dst));
        var vectorized = 0;
        if (Sse2.IsSupported && width is 2 or 4 or 8 && count >= 16)
        {
            fixed (byte* s = src)
            fixed (byte* d = dst)
            {
                vectorized = count & ~15;
                switch (width)
                {
                    case 2: Unshuffle2(s, d, count, vectorized); break;
                    case 4: Unshuffle4(s, d, count, vectorized); break;
                    default: Unshuffle8(s, d, count, vectorized); break;
                }
            }
        }
        UnshuffleScalar(src, dst, width, vectorized);
    }

    /// <summary>The scalar un-shuffle of elements <paramref name="fromElement"/>.. (and the tail shorter than one element).</summary>
    internal static unsafe void UnshuffleScalar(ReadOnlySpan<byte> src, Span<byte> dst, int width, int fromElement = 0)
    {
        var count = src.Length / width;
        if (dst.Length < src.Length) throw new ArgumentException("Destination too short.", nameof(dst));
        fixed (byte* s = src)
        fixed (byte* d = dst)
        {
            for (var j = 0; j < width; j++)
            {
                var plane = s + (long)j * count;
                var to = d + j;
                for (var i = fromElement; i < count; i++) to[(long)i * width] = plane[i];
            }
        }
        src[(count * width)..].CopyTo(dst[(count * width)..]);
    }

    private static unsafe void Unshuffle2(byte* s, byte* d, int count, int end)
    {
        for (var i = 0; i < end; i += 16)
        {
            var a = Sse2.LoadVector128(s + i);
            var b = Sse2.LoadVector128(s + count + i);
            var o = d + (long)i * 2;
            Sse2.Store(o, Sse2.UnpackLow(a, b));
            Sse2.Store(o + 16, Sse2.UnpackHigh(a, b));
        }
    }

    private static unsafe void Unshuffle4(byte* s, byte* d, int count, int end)
    {
        for (var i = 0; i < end; i += 16)
        {
            var p = s + i;
            var a = Sse2.LoadVector128(p);
            var b = Sse2.LoadVector128(p + count);
            var c = Sse2.LoadVector128(p + 2L * count);
            var e = Sse2.LoadVector128(p + 3L * count);
            // Byte pairs (planes 0|1 and 2|3), then word pairs: whole 4-byte elements in order.
            var abLo = Sse2.UnpackLow(a, b).AsUInt16();
            var abHi = Sse2.UnpackHigh(a, b).AsUInt16();
            var ceLo = Sse2.UnpackLow(c, e).AsUInt16();
            var ceHi = Sse2.UnpackHigh(c, e).AsUInt16();
            var o = (ushort*)(d + (long)i * 4);
            Sse2.Store(o, Sse2.UnpackLow(abLo, ceLo));
            Sse2.Store(o + 8, Sse2.UnpackHigh(abLo, ceLo));
            Sse2.Store(o + 16, Sse2.UnpackLow(abHi, ceHi));
            Sse2.Store(o + 24, Sse2.UnpackHigh(abHi, ceHi));
        }
    }

    private static unsafe void Unshuffle8(byte* s, byte* d, int count, int end)
    {
        for (var i = 0; i < end; i += 16)
        {
            var p = s + i;
            var p0 = Sse2.LoadVector128(p);
            var p1 = Sse2.LoadVector128(p + count);
            var p2 = Sse2.LoadVector128(p + 2L * count);
            var p3 = Sse2.LoadVector128(p + 3L * count);
            var p4 = Sse2.LoadVector128(p + 4L * count);
            var p5 = Sse2.LoadVector128(p + 5L * count);
            var p6 = Sse2.LoadVector128(p + 6L * count);
            var p7 = Sse2.LoadVector128(p + 7L * count);
            var o = (uint*)(d + (long)i * 8);
            // Elements 0..7 from the low halves, 8..15 from the high halves: bytes → words → dwords → 8-byte elements.
            Interleave8(Sse2.UnpackLow(p0, p1), Sse2.UnpackLow(p2, p3), Sse2.UnpackLow(p4, p5), Sse2.UnpackLow(p6, p7), o);
            Interleave8(Sse2.UnpackHigh(p0, p1), Sse2.UnpackHigh(p2, p3), Sse2.UnpackHigh(p4, p5), Sse2.UnpackHigh(p6, p7), o + 16);
        }

        static void Interleave8(Vector128<byte> x01, Vector128<byte> x23, Vector128<byte> x45, Vector128<byte> x67, uint* o)
        {
            var y0 = Sse2.UnpackLow(x01.AsUInt16(), x23.AsUInt16()).AsUInt32();
            var y1 = Sse2.UnpackHigh(x01.AsUInt16(), x23.AsUInt16()).AsUInt32();
            var z0 = Sse2.UnpackLow(x45.AsUInt16(), x67.AsUInt16()).AsUInt32();
            var z1 = Sse2.UnpackHigh(x45.AsUInt16(), x67.AsUInt16()).AsUInt32();
            Sse2.Store(o, Sse2.UnpackLow(y0, z0));
            Sse2.Store(o + 4, Sse2.UnpackHigh(y0, z0));
            Sse2.Store(o + 8, Sse2.UnpackLow(y1, z1));
            Sse2.Store(o + 12, Sse2.UnpackHigh(y1, z1));
        }
    }
}

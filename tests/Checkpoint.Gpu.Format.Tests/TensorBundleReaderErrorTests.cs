using System.Buffers.Binary;
using CheckpointGpu.Format.Table;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Format.Tests;

/// <summary>One named test per malformed-input case (safetensors style).</summary>
public sealed class TensorBundleReaderErrorTests : IDisposable
{
    private readonly TempDir _dir = new("rerr");

    public void Dispose() => _dir.Dispose();

    private string Prefix => _dir.File("ckpt");

    private CheckpointFormatException OpenFails(byte[] index, CheckpointFormatError expected, byte[]? data = null)
    {
        File.WriteAllBytes(Prefix + ".index", index);
        File.WriteAllBytes(Prefix + ".data-00000-of-00001", data ?? new byte[16]);
        var ex = Assert.Throws<CheckpointFormatException>(() =>
        {
            using var r = TensorBundleReader.Open(Prefix);
            foreach (var e in r.Entries) r.VerifyEntry(e);
        });
        Assert.Equal(expected, ex.Error);
        Assert.False(string.IsNullOrEmpty(ex.FilePath));
        Assert.StartsWith(Path.GetFileName(ex.FilePath) + ": ", ex.Message, StringComparison.Ordinal);
        return ex;
    }

    private static (byte[], byte[]) H(int shards = 1, int endianness = 0, int producer = 1, int minConsumer = 0) =>
        ([], RawIndex.Header(shards, endianness, producer, minConsumer));

    private static (byte[], byte[]) E(string key, int dtype, long[] dims, int shard, long offset, long size, uint crc = 0) =>
        (System.Text.Encoding.UTF8.GetBytes(key), RawIndex.Entry(dtype, dims, shard, offset, size, crc));

    [Fact]
    public void Open_MissingIndex_ThrowsFileNotFoundWithIndexPath()
    {
        var ex = Assert.Throws<FileNotFoundException>(() => TensorBundleReader.Open(Prefix));
        Assert.Equal(Prefix + ".index", ex.FileName);
    }

    [Fact]
    public void ReadTensor_MissingDataFile_ThrowsFileNotFoundWithDataPath()
    {
        using (var w = new TensorBundleWriter(Prefix)) { w.Add("x", DType.Int32, new TensorShape(1), new byte[4]); w.Finish(); }
        File.Delete(Prefix + ".data-00000-of-00001");
        using var r = TensorBundleReader.Open(Prefix);
        var ex = Assert.Throws<FileNotFoundException>(() => r.VerifyEntry(r.GetEntry("x")));
        Assert.Equal(Prefix + ".data-00000-of-00001", ex.FileName);
    }

    [Fact]
    public void GetEntry_MissingKey_ThrowsKeyNotFoundNamingKeyAndIndex()
    {
        using (var w = new TensorBundleWriter(Prefix)) { w.Add("x", DType.Int32, new TensorShape(1), new byte[4]); w.Finish(); }
        using var r = TensorBundleReader.Open(Prefix);
        var ex = Assert.Throws<KeyNotFoundException>(() => r.GetEntry("nope"));
        Assert.Contains("'nope'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("ckpt.index", ex.Message, StringComparison.Ordinal);
        Assert.False(r.TryGetEntry("nope", out _));
    }

    [Fact]
    public void Open_LegacyV1SingleFile_ThrowsUnsupportedLegacyV1()
    {
        // V1: a table at <prefix> itself whose "" value is a SavedTensorSlices (starts with 0x0A), no .index.
        File.WriteAllBytes(Prefix, RawIndex.Table(([], [0x0A, 0x00])));
        var ex = Assert.Throws<CheckpointFormatException>(() => TensorBundleReader.Open(Prefix));
        Assert.Equal(CheckpointFormatError.LegacyV1Checkpoint, ex.Error);
        Assert.True(ex.IsUnsupportedInput);
        Assert.Contains("V1", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_LegacyV1Sharded_ThrowsUnsupportedLegacyV1()
    {
        File.WriteAllBytes(Prefix + "-00000-of-00002", RawIndex.Table(([], [0x0A, 0x00])));
        var ex = Assert.Throws<CheckpointFormatException>(() => TensorBundleReader.Open(Prefix));
        Assert.Equal(CheckpointFormatError.LegacyV1Checkpoint, ex.Error);
    }

    [Fact]
    public void Open_IndexWithV1HeaderValue_ThrowsLegacyV1()
    {
        var ex = OpenFails(RawIndex.Table(([], [0x0A, 0x02, 0x08, 0x01])), CheckpointFormatError.LegacyV1Checkpoint);
        Assert.True(ex.IsUnsupportedInput);
    }

    [Fact]
    public void Open_TooShort_Throws() => OpenFails(new byte[47], CheckpointFormatError.TooShort);

    [Fact]
    public void Open_BadMagic_Throws()
    {
        var t = RawIndex.Table(H());
        t[^1] ^= 1;
        OpenFails(t, CheckpointFormatError.BadMagic);
    }

    [Fact]
    public void Open_UnknownBlockType_ThrowsBadBlockTrailer()
    {
        var t = RawIndex.Table(H());
        // The single data block starts at 0 and ends 5 bytes before the metaindex.
        var (meta, _) = RawIndex.Handles(t);
        var size = meta.Offset - 5;
        t[size] = 2;   // format.h knows 0 (none) and 1 (Snappy) only
        RawIndex.FixBlockCrc(t, 0, size);
        var ex = OpenFails(t, CheckpointFormatError.BadBlockTrailer);
        Assert.False(ex.IsUnsupportedInput);
        Assert.Equal(0, ex.Offset);
    }

    [Fact]
    public void Open_BlockCrcFlipped_ThrowsChecksumMismatch()
    {
        var t = RawIndex.Table(H(), E("a", 1, [1], 0, 0, 4));
        t[3] ^= 0x10;
        OpenFails(t, CheckpointFormatError.ChecksumMismatch);
    }

    [Fact]
    public void Open_IndexHandleOutsideFile_ThrowsInvalidOffset()
    {
        var t = RawIndex.Table(H());
        var footer = t.Length - 48;
        var (meta, index) = RawIndex.Handles(t);
        Array.Clear(t, footer, 40);
        var n = Varint.Write64(t.AsSpan(footer), (ulong)meta.Offset);
        n += Varint.Write64(t.AsSpan(footer + n), (ulong)meta.Size);
        n += Varint.Write64(t.AsSpan(footer + n), (ulong)index.Offset);
        Varint.Write64(t.AsSpan(footer + n), 1UL << 40);
        OpenFails(t, CheckpointFormatError.InvalidOffset);
    }

    [Fact]
    public void Open_MissingHeader_Throws() => OpenFails(RawIndex.Table(E("a", 1, [1], 0, 0, 4)), CheckpointFormatError.MissingHeader);

    [Fact]
    public void Open_UnsortedKeys_Throws() => OpenFails(RawIndex.UncheckedTable(H(), E("b", 1, [], 0, 0, 4), E("a", 1, [], 0, 4, 4)), CheckpointFormatError.UnsortedKeys);

    [Fact]
    public void Open_DuplicateKeys_Throws() => OpenFails(RawIndex.UncheckedTable(H(), E("a", 1, [], 0, 0, 4), E("a", 1, [], 0, 4, 4)), CheckpointFormatError.DuplicateKey);

    [Fact]
    public void Open_ShardIdBeyondNumShards_Throws()
    {
        var ex = OpenFails(RawIndex.Table(H(shards: 2), E("a", 1, [1], 2, 0, 4)), CheckpointFormatError.InvalidShardId);
        Assert.Equal("a", ex.Key);
        Assert.Equal(2, ex.ShardId);
    }

    [Fact]
    public void Open_NegativeDimension_ThrowsInvalidShape() => OpenFails(RawIndex.Table(H(), E("a", 1, [-3], 0, 0, 4)), CheckpointFormatError.InvalidShape);

    [Fact]
    public void Open_AbsurdShape_ThrowsOverflow() => OpenFails(RawIndex.Table(H(), E("a", 1, [1L << 40, 1L << 40], 0, 0, 4)), CheckpointFormatError.Overflow);

    [Fact]
    public void Open_UnknownDType_ThrowsUnknownDTypeAsUnsupportedInput() =>
        Assert.True(OpenFails(RawIndex.Table(H(), E("a", 99, [1], 0, 0, 4)), CheckpointFormatError.UnknownDType).IsUnsupportedInput);

    [Fact]
    public void VerifyEntry_ResourceDType_ThrowsUnsupportedDType() =>
        Assert.True(OpenFails(RawIndex.Table(H(), E("r", 20, [], 0, 0, 4)), CheckpointFormatError.UnsupportedDType).IsUnsupportedInput);

    [Fact]
    public void Open_FixedSizeMismatch_ThrowsSizeMismatch() => OpenFails(RawIndex.Table(H(), E("a", 1, [3], 0, 0, 4)), CheckpointFormatError.SizeMismatch);

    [Fact]
    public void Open_NewerMinConsumer_ThrowsUnsupportedVersion()
    {
        // This reader is consumer version 2 (it reads LZ4-compressed bundles, issue 14): 3 is newer.
        var ex = OpenFails(RawIndex.Table(H(minConsumer: 3)), CheckpointFormatError.UnsupportedVersion);
        Assert.True(ex.IsUnsupportedInput);
    }

    [Fact]
    public void Open_TooManyDimensions_ThrowsLimitExceeded()
    {
        File.WriteAllBytes(Prefix + ".index", RawIndex.Table(H(), E("a", 1, [1, 1, 1], 0, 0, 4)));
        var ex = Assert.Throws<CheckpointFormatException>(() => TensorBundleReader.Open(Prefix, new TensorBundleReaderOptions { MaxRank = 2 }));
        Assert.Equal(CheckpointFormatError.LimitExceeded, ex.Error);
    }

    [Fact]
    public void ReadTensor_DeclaredSizeBeyondDataFile_ThrowsTruncatedData()
    {
        var ex = OpenFails(RawIndex.Table(H(), E("a", 1, [1000], 0, 0, 4000)), CheckpointFormatError.TruncatedData, data: new byte[100]);
        Assert.Equal(4000, ex.Length);
        Assert.Equal(0, ex.Offset);
    }

    [Fact]
    public void ReadTensor_StringClaimingHugeElementCount_RejectedBeforeAllocating()
    {
        // 2^40 string elements in a 16-byte payload: must fail on size/limit checks, not OutOfMemory.
        var ex = OpenFails(RawIndex.Table(H(), E("s", 7, [1L << 40], 0, 0, 16)), CheckpointFormatError.LimitExceeded);
        Assert.Equal("s", ex.Key);
    }

    [Fact]
    public void ReadTensor_ChecksumMismatch_MessageNamesFileKeyShardOffsetAndValues()
    {
        using (var w = new TensorBundleWriter(Prefix)) { w.Add("model/dense/kernel", DType.Float, new TensorShape(4), new byte[16]); w.Finish(); }
        var data = Prefix + ".data-00000-of-00001";
        var bytes = File.ReadAllBytes(data);
        bytes[5] = 7;
        File.WriteAllBytes(data, bytes);
        using var r = TensorBundleReader.Open(Prefix);
        var e = r.GetEntry("model/dense/kernel");
        var ex = Assert.Throws<CheckpointFormatException>(() => r.ReadTensor(e, new byte[16]));
        Assert.Equal(CheckpointFormatError.ChecksumMismatch, ex.Error);
        Assert.Matches(@"^ckpt\.data-00000-of-00001: checksum mismatch for tensor \(key 'model/dense/kernel', shard 0, offset 0, length 16 bytes\): stored 0x[0-9A-F]{8}, computed 0x[0-9A-F]{8}\.", ex.Message);
        Assert.False(ex.IsUnsupportedInput);
        // Streaming: chunks are delivered, then the mismatch is thrown at the end.
        var seen = 0L;
        Assert.Throws<CheckpointFormatException>(() => r.ReadTensor(e, (c, _) => seen += c.Length, 16));
        Assert.Equal(16, seen);
        // With verification off the bytes come back as stored.
        using var lax = TensorBundleReader.Open(Prefix, new TensorBundleReaderOptions { VerifyChecksums = false });
        var buf = new byte[16];
        lax.ReadTensor(lax.GetEntry("model/dense/kernel"), buf);
        Assert.Equal(7, buf[5]);
    }

    [Fact]
    public void ReadTensor_BigEndianFile_SwapsAfterVerifyingStoredBytes()
    {
        // Data stored big-endian; CRC over the stored bytes (spec §4.7).
        var be = new byte[] { 0x3F, 0x80, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2A, 0x12, 0x34 };
        var floatsCrc = MaskedCrc32C.ComputeMasked(be.AsSpan(0, 8));
        var longCrc = MaskedCrc32C.ComputeMasked(be.AsSpan(8, 8));
        var shortCrc = MaskedCrc32C.ComputeMasked(be.AsSpan(16, 2));
        File.WriteAllBytes(Prefix + ".index", RawIndex.Table(H(endianness: 1), E("f", 1, [2], 0, 0, 8, floatsCrc), E("l", 9, [], 0, 8, 8, longCrc), E("s", 5, [], 0, 16, 2, shortCrc)));
        File.WriteAllBytes(Prefix + ".data-00000-of-00001", be);
        using var r = TensorBundleReader.Open(Prefix);
        Assert.Equal(BundleEndianness.Big, r.Header.Endianness);
        var f = new byte[8];
        r.ReadTensor(r.GetEntry("f"), f);
        Assert.Equal(1.0f, BinaryPrimitives.ReadSingleLittleEndian(f));
        Assert.Equal(2.0f, BinaryPrimitives.ReadSingleLittleEndian(f.AsSpan(4)));
        var l = new byte[8];
        r.ReadTensor(r.GetEntry("l"), l);
        Assert.Equal(42L, BinaryPrimitives.ReadInt64LittleEndian(l));
        var streamed = new List<byte>();
        r.ReadTensor(r.GetEntry("s"), (c, _) => streamed.AddRange(c.ToArray()));
        Assert.Equal(new byte[] { 0x34, 0x12 }, streamed);
        // Raw payloads stay as stored.
        var raw = new List<byte>();
        r.ReadEncodedPayload(r.GetEntry("f"), (c, _) => raw.AddRange(c.ToArray()));
        Assert.Equal(be.AsSpan(0, 8).ToArray(), raw);
    }

    [Fact]
    public unsafe void ReadTensor_NativeDestination_ReadsAndVerifies()
    {
        var values = Enumerable.Range(0, 1000).Select(i => (byte)(i * 7)).ToArray();
        using (var w = new TensorBundleWriter(Prefix)) { w.Add("b", DType.UInt8, new TensorShape(10, 100), values); w.Finish(); }
        using var r = TensorBundleReader.Open(Prefix);
        var mem = System.Runtime.InteropServices.NativeMemory.Alloc(1000);
        try
        {
            r.ReadTensor(r.GetEntry("b"), (nint)mem, 1000);
            Assert.Equal(values, new ReadOnlySpan<byte>(mem, 1000).ToArray());
            Assert.Throws<ArgumentException>(() => r.ReadTensor(r.GetEntry("b"), (nint)mem, 999));
        }
        finally
        {
            System.Runtime.InteropServices.NativeMemory.Free(mem);
        }
    }

    [Fact]
    public void ReadTensor_WrongKindOrLength_ThrowsArgumentException()
    {
        using (var w = new TensorBundleWriter(Prefix))
        {
            w.Add("x", DType.Int32, new TensorShape(2), new byte[8]);
            w.AddStrings("s", TensorShape.Scalar, [[1]]);
            w.Finish();
        }
        using var r = TensorBundleReader.Open(Prefix);
        Assert.Throws<ArgumentException>(() => r.ReadTensor(r.GetEntry("x"), new byte[7]));
        Assert.Throws<ArgumentException>(() => r.ReadTensor(r.GetEntry("s"), new byte[7]));
        Assert.Throws<ArgumentException>(() => r.ReadStrings(r.GetEntry("x")));
    }
}

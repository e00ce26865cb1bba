using System.Buffers.Binary;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Format.Tests;

public sealed class TensorBundleWriterTests : IDisposable
{
    private readonly TempDir _dir = new("writer");

    public void Dispose() => _dir.Dispose();

    private string Prefix => _dir.File("ckpt");

    [Fact]
    public void Add_DuplicateOrEmptyKey_ThrowsArgumentException()
    {
        using var w = new TensorBundleWriter(Prefix);
        w.Add("a", DType.Int8, new TensorShape(1), [1]);
        Assert.Throws<ArgumentException>(() => w.Add("a", DType.Int8, new TensorShape(1), [1]));
        Assert.Throws<ArgumentException>(() => w.Add("", DType.Int8, new TensorShape(1), [1]));
        Assert.Throws<ArgumentException>(() => w.Add("b", DType.Int32, new TensorShape(1), [1]));   // wrong length
        Assert.Throws<ArgumentException>(() => w.Add("c", DType.String, new TensorShape(1), [1]));  // not fixed-size
        Assert.Throws<ArgumentOutOfRangeException>(() => w.Add("d", DType.Int8, new TensorShape(1), [1], shardId: 1));
        // Argument errors do not poison the writer.
        w.Add("e", DType.Int8, new TensorShape(1), [2]);
        w.Finish();
        using var r = TensorBundleReader.Open(Prefix);
        Assert.Equal(["a", "e"], r.Entries.Select(e => e.Key));
    }

    [Fact]
    public void Add_AfterFinish_ThrowsInvalidOperation()
    {
        using var w = new TensorBundleWriter(Prefix);
        w.Finish();
        Assert.Throws<InvalidOperationException>(() => w.Add("a", DType.Int8, new TensorShape(1), [1]));
        Assert.Throws<InvalidOperationException>(() => w.Finish());
    }

    [Fact]
    public void Finish_NoTensors_WritesHeaderOnlyBundleWithEmptyDataFile()
    {
        using (var w = new TensorBundleWriter(Prefix)) w.Finish();
        using var r = TensorBundleReader.Open(Prefix);
        Assert.Empty(r.Entries);
        Assert.Equal(0, new FileInfo(Prefix + ".data-00000-of-00001").Length);
    }

    [Fact]
    public void Dispose_WithoutFinish_DeletesTempsAndKeepsExistingCheckpoint()
    {
        using (var w = new TensorBundleWriter(Prefix)) { w.Add("old", DType.Int8, new TensorShape(1), [1]); w.Finish(); }
        var oldIndex = File.ReadAllBytes(Prefix + ".index");
        var oldData = File.ReadAllBytes(Prefix + ".data-00000-of-00001");
        using (var w = new TensorBundleWriter(Prefix))
        {
            w.Add("new", DType.Int8, new TensorShape(1), [2]);
            Assert.NotEmpty(Directory.GetFiles(_dir.Path, "*.tempstate*"));
        }
        Assert.Empty(Directory.GetFiles(_dir.Path, "*.tempstate*"));
        Assert.Equal(oldIndex, File.ReadAllBytes(Prefix + ".index"));
        Assert.Equal(oldData, File.ReadAllBytes(Prefix + ".data-00000-of-00001"));
    }

    [Fact]
    public void Add_SourceEndsEarly_PoisonsWriterAndDisposeCleansUp()
    {
        using (var w = new TensorBundleWriter(Prefix))
        {
            Assert.Throws<InvalidOperationException>(() => w.Add("x", DType.Int8, new TensorShape(100), 100, (buf, off) => off == 0 ? 10 : 0));
            Assert.Throws<InvalidOperationException>(() => w.Add("y", DType.Int8, new TensorShape(1), [1]));
        }
        Assert.Empty(Directory.GetFiles(_dir.Path));
    }

    [Fact]
    public void AddEncoded_WrongChecksum_ThrowsChecksumMismatch()
    {
        using var w = new TensorBundleWriter(Prefix);
        var ex = Assert.Throws<CheckpointFormatException>(() =>
            w.AddEncoded("s", DType.String, TensorShape.Scalar, 8, 0x12345678, (buf, off) => { Convert.FromHexString("03633F7F28616263").AsSpan((int)off, buf.Length).CopyTo(buf); return buf.Length; }));
        Assert.Equal(CheckpointFormatError.ChecksumMismatch, ex.Error);
    }

    [Fact]
    public void AddEncoded_ValidStringPayload_PassesThrough()
    {
        var payload = Convert.FromHexString("03633F7F28616263");
        using (var w = new TensorBundleWriter(Prefix))
        {
            w.AddEncoded("s", DType.String, TensorShape.Scalar, 8, 0x199AD1C3, (buf, off) => { payload.AsSpan((int)off, buf.Length).CopyTo(buf); return buf.Length; });
            w.Finish();
        }
        using var r = TensorBundleReader.Open(Prefix);
        Assert.Equal("abc"u8.ToArray(), r.ReadStrings(r.GetEntry("s"))[0]);
    }

    [Fact]
    public void Options_AlignmentAndShards_OffsetsAlignedAndEveryShardFileExists()
    {
        using (var w = new TensorBundleWriter(Prefix, new TensorBundleWriterOptions { ShardCount = 3, DataAlignmentInBytes = 8 }))
        {
            w.Add("a", DType.Int8, new TensorShape(3), [1, 2, 3], shardId: 0);
            w.Add("b", DType.Int16, new TensorShape(1), [4, 5], shardId: 0);
            w.Add("c", DType.Int32, new TensorShape(1), [6, 7, 8, 9], shardId: 2);
            w.Finish();
        }
        using var r = TensorBundleReader.Open(Prefix);
        Assert.Equal(3, r.Header.ShardCount);
        Assert.Equal(8, r.GetEntry("b").Offset);
        Assert.Equal(2, r.GetEntry("c").ShardId);
        Assert.True(File.Exists(Prefix + ".data-00001-of-00003"));
        Assert.Equal(0, new FileInfo(Prefix + ".data-00001-of-00003").Length);
        var b = new byte[2];
        r.ReadTensor(r.GetEntry("b"), b);
        Assert.Equal(new byte[] { 4, 5 }, b);
        Assert.Equal(16, new FileInfo(Prefix + ".data-00000-of-00003").Length);
    }

    [Fact]
    public void AddSlice_PartialSlices_FullEntryListsSlicesAndSliceKeysAreReadable()
    {
        var full = new TensorShape(4, 2);
        var top = new TensorSlice(new TensorSliceExtent(0, 2), TensorSliceExtent.Full);
        var bottom = new TensorSlice(new TensorSliceExtent(2, 2), TensorSliceExtent.Full);
        using (var w = new TensorBundleWriter(Prefix))
        {
            w.AddSlice("w", full, top, DType.Int8, [1, 2, 3, 4]);
            w.AddSlice("w", full, bottom, DType.Int8, [5, 6, 7, 8]);
            w.Finish();
        }
        using var r = TensorBundleReader.Open(Prefix);
        Assert.Equal(3, r.Entries.Count);
        var fullEntry = r.GetEntry("w");
        Assert.True(fullEntry.IsPartitioned);
        Assert.Equal([top, bottom], fullEntry.Slices);
        var sliceEntries = r.Entries.Where(e => e.IsSliceEntry).ToArray();
        Assert.Equal(2, sliceEntries.Length);
        Assert.Equal(TensorSlice.EncodeSliceKey("w", top), sliceEntries[0].KeyUtf8.ToArray());
        Assert.Equal("w:0,2:-", sliceEntries[0].Key);
        var data = new byte[4];
        r.ReadTensor(r.GetEntry("w:2,2:-"), data);
        Assert.Equal(new byte[] { 5, 6, 7, 8 }, data);
        Assert.Throws<ArgumentException>(() => r.ReadTensor(fullEntry, new byte[8]));

        // Reproduce through AddEncoded (exact key bytes, slices) byte for byte.
        var copy = _dir.File("copy");
        using (var w = new TensorBundleWriter(copy))
        {
            foreach (var e in r.Entries.OrderBy(e => e.Offset).ThenBy(e => e.IsPartitioned))
                w.AddEncoded(e, e.IsPartitioned ? null : (buf, off) => { r.ReadRawBytes(e, off, buf); return buf.Length; });
            w.Finish();
        }
        Assert.Equal(File.ReadAllBytes(Prefix + ".index"), File.ReadAllBytes(copy + ".index"));
    }

    [Fact]
    public void AddSlice_WholeSlice_StoredAsNormalEntry()
    {
        using (var w = new TensorBundleWriter(Prefix))
        {
            w.AddSlice("w", new TensorShape(2), new TensorSlice(new TensorSliceExtent(0, 2)), DType.Int8, [1, 2]);
            w.Finish();
        }
        using var r = TensorBundleReader.Open(Prefix);
        Assert.False(Assert.Single(r.Entries).IsPartitioned);
    }

    [Fact]
    public void Add_StreamingWithChunkSource_MatchesSpanWrite()
    {
        var data = new byte[(5 << 20) + 12];
        new Random(9).NextBytes(data);
        using (var w = new TensorBundleWriter(Prefix))
        {
            w.Add("big", DType.Float, new TensorShape(data.Length / 4), data.Length, (buf, off) =>
            {
                var n = Math.Min(buf.Length, 777_777);
                data.AsSpan((int)off, n).CopyTo(buf);
                return n;
            });
            w.Finish();
        }
        using var r = TensorBundleReader.Open(Prefix);
        var e = r.GetEntry("big");
        Assert.Equal(MaskedCrc32C.ComputeMasked(data), e.Crc32C);
        var back = new byte[data.Length];
        r.ReadTensor(e, (c, off) => c.CopyTo(back.AsSpan((int)off)), 1 << 20);
        Assert.Equal(data, back);
    }

    [Fact]
    [Trait("Category", "Large")]
    public void Add_TensorLargerThan2GiB_StreamsWriteAndReadWithCrc()
    {
        // > int.MaxValue bytes: exercises 64-bit offsets/sizes and chunked CRC in both directions (~2.1 GiB on disk).
        if (Environment.GetEnvironmentVariable("CKPT_SKIP_LARGE") == "1") return;
        const long size = (1L << 31) + 4096;
        static byte Pattern(long i) => (byte)((i * 2654435761L) >> 13);
        var chunk = new byte[4 << 20];
        uint expectedCrc = 0;
        using (var w = new TensorBundleWriter(Prefix, new TensorBundleWriterOptions { FlushToDisk = false }))
        {
            w.Add("small", DType.Int8, new TensorShape(3), [1, 2, 3]);
            w.Add("huge", DType.UInt8, new TensorShape(size), size, (buf, off) =>
            {
                for (var i = 0; i < buf.Length; i++) buf[i] = Pattern(off + i);
                expectedCrc = MaskedCrc32C.Extend(expectedCrc, buf);
                return buf.Length;
            });
            w.Add("after", DType.Int64, TensorShape.Scalar, BitConverter.GetBytes(42L));
            w.Finish();
        }
        try
        {
            using var r = TensorBundleReader.Open(Prefix);
            var e = r.GetEntry("huge");
            Assert.Equal(size, e.Size);
            Assert.Equal(MaskedCrc32C.Mask(expectedCrc), e.Crc32C);
            Assert.Equal(3 + size, r.GetEntry("after").Offset);
            long seen = 0;
            var mismatches = 0;
            r.ReadTensor(e, (c, off) =>
            {
                if (c[0] != Pattern(off) || c[^1] != Pattern(off + c.Length - 1)) mismatches++;
                seen += c.Length;
            }, 8 << 20);
            Assert.Equal(size, seen);
            Assert.Equal(0, mismatches);
            var after = new byte[8];
            r.ReadTensor(r.GetEntry("after"), after);
            Assert.Equal(42L, BinaryPrimitives.ReadInt64LittleEndian(after));
        }
        finally
        {
            File.Delete(Prefix + ".data-00000-of-00001");
        }
    }
}

using System.Buffers.Binary;
using System.Runtime.InteropServices;
using CheckpointGpu.Format.Protos;
using CheckpointGpu.Format.Table;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Format.Tests;

/// <summary>LZ4 tensor compression in bundles (issue 14): round trips, TensorFlow's refusal, bounds and corrupt frames.</summary>
public sealed class BundleCompressionTests
{
    // TensorFlow's consumer version for bundles: kTensorBundleVersion in tensorflow/core/util/tensor_bundle/tensor_bundle.cc.
    private const int TfTensorBundleVersion = 1;

    private static float[] Smooth(int n) => Enumerable.Range(0, n).Select(i => MathF.Round(MathF.Sin(i * 0.001f) * 64f) / 64f).ToArray();

    private static byte[] Bytes<T>(T[] values) where T : unmanaged => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    /// <summary>Writes a small mixed bundle, plain or compressed.</summary>
    private static void WriteSample(string prefix, BundleCompressionOptions? compression, int floats = 300_000)
    {
        using var w = new TensorBundleWriter(prefix, new TensorBundleWriterOptions { ShardCount = 2, Compression = compression });
        w.Add("a/float", DType.Float, new TensorShape(floats), Bytes(Smooth(floats)), 0);
        w.Add("b/int64", DType.Int64, new TensorShape(50_000), Bytes(Enumerable.Range(0, 50_000).Select(i => (long)(i / 7)).ToArray()), 1);
        w.Add("c/small", DType.Float, new TensorShape(3), Bytes(new[] { 1f, 2f, 3f }), 0);
        var random = new byte[64 << 10];
        new Random(5).NextBytes(random);
        w.Add("d/random", DType.UInt8, new TensorShape(random.Length), random, 1);
        w.AddStrings("e/strings", new TensorShape(2), [[1, 2, 3], [4]], 0);
        w.AddSlice("f/part", new TensorShape(4, 2), new TensorSlice(new TensorSliceExtent(0, 2), TensorSliceExtent.Full), DType.Float, Bytes(new[] { 1f, 2f, 3f, 4f }), 1);
        w.AddSlice("f/part", new TensorShape(4, 2), new TensorSlice(new TensorSliceExtent(2, 2), TensorSliceExtent.Full), DType.Float, Bytes(new[] { 5f, 6f, 7f, 8f }), 1);
        w.Finish();
    }

    private static void AssertSameContents(string expectedPrefix, string actualPrefix)
    {
        using var a = TensorBundleReader.Open(expectedPrefix);
        using var b = TensorBundleReader.Open(actualPrefix);
        Assert.Equal(a.Entries.Count, b.Entries.Count);
        foreach (var e in a.Entries)
        {
            var other = b.Entries.Single(x => x.GetKeyBytes().AsSpan().SequenceEqual(e.GetKeyBytes()));
            Assert.Equal((e.DType, e.Shape, e.Size, e.Crc32C, e.Slices.Count), (other.DType, other.Shape, other.Size, other.Crc32C, other.Slices.Count));
            if (e.IsPartitioned) continue;
            var x = new List<byte>();
            var y = new List<byte>();
            a.ReadEncodedPayload(e, (chunk, _) => x.AddRange(chunk.ToArray()));
            b.ReadEncodedPayload(other, (chunk, _) => y.AddRange(chunk.ToArray()));
            Assert.True(x.SequenceEqual(y), $"payload of '{e.Key}' differs");
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void CompressedBundle_ReadsBackTheSameTensors_AndConvertsToThePlainBytes(bool shuffle)
    {
        using var dir = new TempDir("lz4");
        var plain = dir.File("plain");
        var compressed = dir.File("lz4");
        WriteSample(plain, null);
        WriteSample(compressed, new BundleCompressionOptions { Shuffle = shuffle, BlockSizeInBytes = 64 << 10 });

        using (var r = TensorBundleReader.Open(compressed))
        {
            var f = r.GetEntry("a/float");
            Assert.NotNull(f.Compression);
            Assert.Equal(shuffle ? 4 : 0, f.Compression!.ShuffleWidth);
            Assert.True(f.Compression.StoredSize < f.Size / 2, $"smooth floats compress: {f.Compression.StoredSize} of {f.Size}");
            Assert.NotNull(r.GetEntry("b/int64").Compression);
            Assert.Equal(0, r.GetEntry("b/int64").Compression!.ShuffleWidth);   // shuffle is for floating point only
            Assert.Null(r.GetEntry("c/small").Compression);                       // below MinTensorBytes
            Assert.Null(r.GetEntry("d/random").Compression);                      // does not shrink: stored plain
            var values = new byte[f.Size];
            r.ReadTensor(f, values);
            Assert.Equal(Bytes(Smooth(300_000)), values);
            var chunked = new byte[f.Size];
            r.ReadTensor(f, (chunk, offset) => chunk.CopyTo(chunked.AsSpan((int)offset)), 1 << 16);
            Assert.Equal(values, chunked);
        }
        AssertSameContents(plain, compressed);

        // compressed → plain gives byte-identical files to a plain write of the same tensors.
        var back = dir.File("back");
        TensorBundle.Convert(compressed, back, null);
        foreach (var suffix in new[] { ".index", ".data-00000-of-00002", ".data-00001-of-00002" })
            Assert.Equal(File.ReadAllBytes(plain + suffix), File.ReadAllBytes(back + suffix));
        // plain → compressed → compressed entries equal.
        var again = dir.File("again");
        TensorBundle.Convert(plain, again, new BundleCompressionOptions { Shuffle = shuffle, BlockSizeInBytes = 64 << 10 });
        AssertSameContents(compressed, again);
    }

    [Fact]
    public void TfCorpus_CompressedAndBack_IsByteIdenticalToTensorFlowsFiles()
    {
        if (TfCorpus.SkipReason is not null && !TfCorpus.IsCi) return;
        using var dir = new TempDir("lz4tf");
        var tf = Path.Combine(TfCorpus.Case("obj-sharded2-rl"), "ckpt-5");
        var compressed = dir.File("c");
        var back = dir.File("p");
        TensorBundle.Convert(tf, compressed, new BundleCompressionOptions { MinTensorBytes = 64 });
        using (var r = TensorBundleReader.Open(compressed))
            Assert.Contains(r.Entries, e => e.Compression is not null);
        AssertSameContents(tf, compressed);
        TensorBundle.Convert(compressed, back, null);
        foreach (var suffix in new[] { ".index", ".data-00000-of-00002", ".data-00001-of-00002" })
            Assert.Equal(File.ReadAllBytes(tf + suffix), File.ReadAllBytes(back + suffix));
    }

    /// <summary>The header bytes we write make TensorFlow's CheckVersions refuse the file (versions.cc: min_consumer &gt; consumer).</summary>
    [Fact]
    public void CompressedHeader_MinConsumerAboveTensorFlowsBundleVersion_PlainHeaderBelow()
    {
        using var dir = new TempDir("lz4hdr");
        WriteSample(dir.File("plain"), null);
        WriteSample(dir.File("lz4"), BundleCompressionOptions.Default);
        VersionDef HeaderVersion(string prefix)
        {
            var bytes = File.ReadAllBytes(prefix + ".index");
            var first = TableReader.ReadAll(bytes, prefix + ".index", 1000, 1000)[0];
            Assert.Empty(first.Key);   // kHeaderEntryKey "" sorts first
            return BundleHeaderProto.Parser.ParseFrom(first.Value).Version;
        }
        // TF: CheckVersions(header.version(), kTensorBundleVersion, kTensorBundleMinProducer, ...) refuses min_consumer > consumer.
        static bool TfAccepts(VersionDef v) => v.Producer >= 0 && v.MinConsumer <= TfTensorBundleVersion && !v.BadConsumers.Contains(TfTensorBundleVersion);
        var compressed = HeaderVersion(dir.File("lz4"));
        Assert.Equal(2, compressed.MinConsumer);
        Assert.False(TfAccepts(compressed));
        var plain = HeaderVersion(dir.File("plain"));
        Assert.Equal((1, 0), (plain.Producer, plain.MinConsumer));
        Assert.True(TfAccepts(plain));
        // Plain entries carry no extension field: TF's parser sees exactly its own BundleEntryProto.
        var entries = TableReader.ReadAll(File.ReadAllBytes(dir.File("plain") + ".index"), "x", 1000, 1000).Skip(1);
        Assert.All(entries, e => Assert.Null(BundleEntryProto.Parser.ParseFrom(e.Value).CheckpointGpuCompression));
    }

    [Fact]
    public void CorruptBlockHeader_IsFormatErrorNamingFileKeyAndOffset()
    {
        using var dir = new TempDir("lz4bad");
        var prefix = dir.File("c");
        WriteSample(prefix, new BundleCompressionOptions { BlockSizeInBytes = 64 << 10 });
        BundleEntry entry;
        using (var r = TensorBundleReader.Open(prefix)) entry = r.GetEntry("a/float");
        var data = BundleNaming.DataFile(prefix, entry.ShardId, 2);
        var bytes = File.ReadAllBytes(data);
        // Second block's length word: claims more than the block can hold.
        var firstLength = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan((int)entry.Offset)) & 0x7FFF_FFFF;
        var second = entry.Offset + 4 + firstLength;
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan((int)second), 0x7FFF_FFF0);
        File.WriteAllBytes(data, bytes);
        using var reader = TensorBundleReader.Open(prefix);
        var ex = Assert.Throws<CheckpointFormatException>(() => reader.ReadTensor(entry, new byte[entry.Size]));
        Assert.Equal("a/float", ex.Key);
        Assert.Equal(second, ex.Offset);
        Assert.Equal(Path.GetFullPath(data), Path.GetFullPath(ex.FilePath));
    }

    [Fact]
    public void DeclaredSizeNotMatchingShape_IsRejectedWhenTheIndexIsParsed()
    {
        using var dir = new TempDir("lz4size");
        var prefix = dir.File("c");
        WriteSample(prefix, BundleCompressionOptions.Default);
        var (header, entries) = TensorBundleIndex.Read(prefix);
        // Claim 1 TiB of uncompressed bytes for a 1.2 MB tensor: must fail before any allocation.
        var forged = entries.Select(e => e.Key == "a/float" ? e with { Size = 1L << 40 } : e).ToList();
        File.Delete(prefix + ".index");
        TensorBundleIndex.Write(prefix + ".index", header, forged);
        var ex = Assert.Throws<CheckpointFormatException>(() => TensorBundleReader.Open(prefix));
        Assert.Equal(CheckpointFormatError.SizeMismatch, ex.Error);
        Assert.Equal("a/float", ex.Key);
    }

    /// <summary>Every truncation and every flipped byte of a compressed payload is read or refused with a format error, never anything else.</summary>
    [Fact]
    public void CorruptionSweep_CompressedPayload_OnlyFormatErrors()
    {
        using var dir = new TempDir("lz4sweep");
        var prefix = dir.File("c");
        using (var w = new TensorBundleWriter(prefix, new TensorBundleWriterOptions { Compression = new BundleCompressionOptions { BlockSizeInBytes = 64 << 10 } }))
        {
            w.Add("x", DType.Float, new TensorShape(40_000), Bytes(Smooth(40_000)), 0);
            w.Finish();
        }
        var data = BundleNaming.DataFile(prefix, 0, 1);
        var original = File.ReadAllBytes(data);
        BundleEntry entry;
        using (var r = TensorBundleReader.Open(prefix)) entry = r.GetEntry("x");
        var step = Math.Max(1, original.Length / 600);
        for (var i = 0; i < original.Length; i += step)
        {
            var mutated = (byte[])original.Clone();
            mutated[i] ^= 0x5A;
            File.WriteAllBytes(data, mutated);
            using var reader = TensorBundleReader.Open(prefix);
            var ex = Assert.Throws<CheckpointFormatException>(() => reader.ReadTensor(entry, new byte[entry.Size]));
            Assert.Equal("x", ex.Key);
        }
        for (var len = 0; len < original.Length; len += step)
        {
            File.WriteAllBytes(data, original.AsSpan(0, len).ToArray());
            using var reader = TensorBundleReader.Open(prefix);
            Assert.Throws<CheckpointFormatException>(() => reader.ReadTensor(entry, new byte[entry.Size]));
        }
    }

    /// <summary>
    /// The vectorized un-shuffle (widths 2, 4, 8) against the definition <c>dst[i * w + j] = src[j * n + i]</c>, computed
    /// here independently, for lengths around the 16-element step (tails, partial elements), and as Shuffle's inverse.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(8)]
    [InlineData(16)]
    public void Unshuffle_MatchesTheDefinition_AndInvertsShuffle(int width)
    {
        var random = new Random(width);
        foreach (var length in new[] { 0, 1, 15 * width, 16 * width, 16 * width + 1, 17 * width + width - 1, 33 * width, 4096 * width + 3, 100_003 })
        {
            var src = new byte[length];
            random.NextBytes(src);
            var n = length / width;
            var expected = new byte[length];
            for (var i = 0; i < n; i++)
                for (var j = 0; j < width; j++) expected[i * width + j] = src[j * n + i];
            for (var k = n * width; k < length; k++) expected[k] = src[k];

            var actual = new byte[length];
            BundleCompression.Unshuffle(src, actual, width);
            Assert.True(expected.AsSpan().SequenceEqual(actual), $"width {width}, length {length}");

            var shuffled = new byte[length];
            BundleCompression.Shuffle(expected, shuffled, width);
            Assert.True(src.AsSpan().SequenceEqual(shuffled), $"Shuffle is the inverse: width {width}, length {length}");
        }
    }
}

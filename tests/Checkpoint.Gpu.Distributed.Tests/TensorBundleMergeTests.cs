using System.Runtime.InteropServices;
using CheckpointGpu.Format;

namespace CheckpointGpu.Distributed.Tests;

/// <summary>TensorBundle.Merge against TF's MergeBundles rules (spec §1.3 C), checked through an independent writer path.</summary>
public sealed class TensorBundleMergeTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static byte[] Floats(int n, float start) => MemoryMarshal.AsBytes(Enumerable.Range(0, n).Select(i => start + i).ToArray().AsSpan()).ToArray();

    private string Part(int r, int n) => BundleNaming.ShardedPrefix(_dir["P_temp/part"], r, n);

    [Fact]
    public void Merge_TwoParts_IndexAndDataEqualSingleWriterWithSameShardLayout()
    {
        var p0 = Part(0, 2);
        var p1 = Part(1, 2);
        using (var w = new TensorBundleWriter(p0))
        {
            w.Add("a", DType.Float, new TensorShape(3), Floats(3, 1));
            w.Add("c", DType.Float, new TensorShape(2, 2), Floats(4, 10));
            w.AddStrings("_CHECKPOINTABLE_OBJECT_GRAPH", TensorShape.Scalar, [[1, 2, 3]]);
            w.Finish();
        }
        using (var w = new TensorBundleWriter(p1))
        {
            w.Add("b", DType.Float, new TensorShape(5), Floats(5, 100));
            w.Add("d", DType.Int64, TensorShape.Scalar, BitConverter.GetBytes(7L));
            w.Finish();
        }
        var header = TensorBundle.Merge([p0, p1], _dir["P"]);
        Assert.Equal(2, header.ShardCount);

        // Independent path: one writer, two shards, same per-shard order.
        using (var w = new TensorBundleWriter(_dir["ref/P"], new TensorBundleWriterOptions { ShardCount = 2 }))
        {
            w.Add("a", DType.Float, new TensorShape(3), Floats(3, 1), 0);
            w.Add("c", DType.Float, new TensorShape(2, 2), Floats(4, 10), 0);
            w.AddStrings("_CHECKPOINTABLE_OBJECT_GRAPH", TensorShape.Scalar, [[1, 2, 3]], 0);
            w.Add("b", DType.Float, new TensorShape(5), Floats(5, 100), 1);
            w.Add("d", DType.Int64, TensorShape.Scalar, BitConverter.GetBytes(7L), 1);
            w.Finish();
        }
        Assert.Equal(File.ReadAllBytes(_dir["ref/P.index"]), File.ReadAllBytes(_dir["P.index"]));
        for (var i = 0; i < 2; i++)
            Assert.Equal(File.ReadAllBytes(BundleNaming.DataFile(_dir["ref/P"], i, 2)), File.ReadAllBytes(BundleNaming.DataFile(_dir["P"], i, 2)));
        Assert.False(Directory.Exists(_dir["P_temp"]));   // inputs' indexes deleted, data renamed, dir removed
        using var reader = TensorBundleReader.Open(_dir["P"]);
        foreach (var e in reader.Entries) reader.VerifyEntry(e);
        // Header bytes for N = 2: 08 02 1a 02 08 01.
        Assert.Equal(2, reader.Header.ShardCount);
    }

    [Fact]
    public void Merge_FromIndexBytesInMemory_EqualsSingleWriter_AndRejectsCorruptBytes()
    {
        // Parts with a partitioned tensor split across them (slices concatenate in part order).
        var p0 = Part(0, 2);
        var p1 = Part(1, 2);
        using (var w = new TensorBundleWriter(p0))
        {
            w.Add("a", DType.Float, new TensorShape(3), Floats(3, 1));
            w.AddStrings("_CHECKPOINTABLE_OBJECT_GRAPH", TensorShape.Scalar, [[1, 2, 3]]);
            w.Finish();
        }
        using (var w = new TensorBundleWriter(p1))
        {
            w.Add("b", DType.Float, new TensorShape(5), Floats(5, 100));
            w.Finish();
        }
        var bytes0 = File.ReadAllBytes(p0 + ".index");
        var bytes1 = File.ReadAllBytes(p1 + ".index");
        // What the chief gets over MPI: bytes. Hide the files so a read of them would fail the merge.
        File.Delete(p0 + ".index");
        File.Delete(p1 + ".index");
        var header = TensorBundle.Merge([TensorBundlePartIndex.Parse(p0, bytes0), TensorBundlePartIndex.Parse(p1, bytes1)], _dir["P"]);
        Assert.Equal(2, header.ShardCount);
        using (var w = new TensorBundleWriter(_dir["ref/P"], new TensorBundleWriterOptions { ShardCount = 2 }))
        {
            w.Add("a", DType.Float, new TensorShape(3), Floats(3, 1), 0);
            w.AddStrings("_CHECKPOINTABLE_OBJECT_GRAPH", TensorShape.Scalar, [[1, 2, 3]], 0);
            w.Add("b", DType.Float, new TensorShape(5), Floats(5, 100), 1);
            w.Finish();
        }
        Assert.Equal(File.ReadAllBytes(_dir["ref/P.index"]), File.ReadAllBytes(_dir["P.index"]));
        for (var i = 0; i < 2; i++)
            Assert.Equal(File.ReadAllBytes(BundleNaming.DataFile(_dir["ref/P"], i, 2)), File.ReadAllBytes(BundleNaming.DataFile(_dir["P"], i, 2)));

        // Untrusted bytes: a flipped byte fails a block CRC, truncation fails the footer; both name the part's index.
        var flipped = (byte[])bytes0.Clone();
        flipped[3] ^= 0x40;
        var ex = Assert.Throws<CheckpointFormatException>(() => TensorBundlePartIndex.Parse(p0, flipped));
        Assert.Contains("part-00000-of-00002.index", ex.Message, StringComparison.Ordinal);
        Assert.Throws<CheckpointFormatException>(() => TensorBundlePartIndex.Parse(p0, bytes0.AsSpan(0, bytes0.Length - 5)));
        Assert.Throws<CheckpointFormatException>(() => TensorBundlePartIndex.Parse(p0, bytes0, new TensorBundleReaderOptions { MaxIndexFileBytes = 48 }));
    }

    [Fact]
    public void Merge_DeleteInputIndexesFalse_LeavesInputIndexesAndDirectory_MergedBundleUnchanged()
    {
        var p0 = Part(0, 2);
        var p1 = Part(1, 2);
        using (var w = new TensorBundleWriter(p0))
        {
            w.Add("a", DType.Float, new TensorShape(3), Floats(3, 1));
            w.Finish();
        }
        using (var w = new TensorBundleWriter(p1))
        {
            w.Add("b", DType.Float, new TensorShape(5), Floats(5, 100));
            w.Finish();
        }
        var bytes0 = File.ReadAllBytes(p0 + ".index");
        var bytes1 = File.ReadAllBytes(p1 + ".index");
        TensorBundle.Merge([TensorBundlePartIndex.Parse(p0, bytes0), TensorBundlePartIndex.Parse(p1, bytes1)], _dir["P"],
            new TensorBundleMergeOptions { DeleteInputIndexes = false });
        // The inputs' indexes (and so P_temp/) are the caller's to remove; their data files were renamed into the merge.
        Assert.Equal(bytes0, File.ReadAllBytes(p0 + ".index"));
        Assert.Equal(bytes1, File.ReadAllBytes(p1 + ".index"));
        Assert.False(File.Exists(BundleNaming.DataFile(p0, 0, 1)));

        using (var w = new TensorBundleWriter(_dir["ref/P"], new TensorBundleWriterOptions { ShardCount = 2 }))
        {
            w.Add("a", DType.Float, new TensorShape(3), Floats(3, 1), 0);
            w.Add("b", DType.Float, new TensorShape(5), Floats(5, 100), 1);
            w.Finish();
        }
        Assert.Equal(File.ReadAllBytes(_dir["ref/P.index"]), File.ReadAllBytes(_dir["P.index"]));
        for (var i = 0; i < 2; i++)
            Assert.Equal(File.ReadAllBytes(BundleNaming.DataFile(_dir["ref/P"], i, 2)), File.ReadAllBytes(BundleNaming.DataFile(_dir["P"], i, 2)));
    }

    [Fact]
    public async Task FileSystemBarrier_EveryRankWaitsForAll_ThenPasses()
    {
        var contexts = Enumerable.Range(0, 3).Select(r => new WorkerContext(r, 3, _dir["coord"]).EffectiveCoordination).ToArray();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var late = Task.Run(async () => { await Task.Delay(300); contexts[2].Barrier(TimeSpan.FromSeconds(10)); });
        var early = contexts.Take(2).Select(c => c.BarrierAsync(TimeSpan.FromSeconds(10), CancellationToken.None)).ToArray();
        await Task.WhenAll([.. early, late]);
        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(290), "a rank passed the barrier before the last one arrived");
        // A second barrier with a rank missing times out naming it.
        var ex = Assert.Throws<TimeoutException>(() => contexts[0].Barrier(TimeSpan.FromMilliseconds(100)));
        Assert.Contains("rank(s) 1, 2", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Merge_InputWithTwoShards_IdsFollowFirstAppearanceInKeyOrder_HeaderSumsShards()
    {
        var p0 = Part(0, 2);
        var p1 = Part(1, 2);
        using (var w = new TensorBundleWriter(p0, new TensorBundleWriterOptions { ShardCount = 2 }))
        {
            w.Add("z", DType.Float, new TensorShape(2), Floats(2, 1), 0);
            w.Add("a", DType.Float, new TensorShape(2), Floats(2, 5), 1);   // key "a" sorts first: its shard 1 becomes id 0
            w.Finish();
        }
        using (var w = new TensorBundleWriter(p1))
        {
            w.Add("m", DType.Float, new TensorShape(1), Floats(1, 9));
            w.Finish();
        }
        var dataZ = File.ReadAllBytes(BundleNaming.DataFile(p0, 0, 2));
        var dataA = File.ReadAllBytes(BundleNaming.DataFile(p0, 1, 2));
        var header = TensorBundle.Merge([p0, p1], _dir["P"]);
        Assert.Equal(3, header.ShardCount);
        using var reader = TensorBundleReader.Open(_dir["P"]);
        Assert.Equal(0, reader.GetEntry("a").ShardId);
        Assert.Equal(1, reader.GetEntry("z").ShardId);
        Assert.Equal(2, reader.GetEntry("m").ShardId);
        Assert.Equal(dataA, File.ReadAllBytes(BundleNaming.DataFile(_dir["P"], 0, 3)));
        Assert.Equal(dataZ, File.ReadAllBytes(BundleNaming.DataFile(_dir["P"], 1, 3)));
        // Byte-level: exactly the index TF would write for these entries.
        using var expected = new MemoryStream();
        TensorBundleIndex.Serialize(expected, BundleHeader.Default with { ShardCount = 3 }, reader.Entries);
        Assert.Equal(expected.ToArray(), File.ReadAllBytes(_dir["P.index"]));
    }

    [Fact]
    public void Merge_DuplicateUnpartitionedKey_ThrowsBeforeMovingAnyFile()
    {
        var p0 = Part(0, 2);
        var p1 = Part(1, 2);
        foreach (var p in new[] { p0, p1 })
        {
            using var w = new TensorBundleWriter(p);
            w.Add("same", DType.Float, new TensorShape(1), Floats(1, 0));
            w.Finish();
        }
        var ex = Assert.Throws<CheckpointFormatException>(() => TensorBundle.Merge([p0, p1], _dir["P"]));
        Assert.Equal(CheckpointFormatError.DuplicateKey, ex.Error);
        Assert.Equal("same", ex.Key);
        Assert.False(File.Exists(_dir["P.index"]));
        Assert.True(File.Exists(BundleNaming.DataFile(p0, 0, 1)));
        Assert.True(File.Exists(BundleNaming.IndexFile(p1)));
    }

    [Fact]
    public void Merge_PartitionedTensor_SliceListsConcatenatedInInputOrder_AndReadable()
    {
        var shape = new TensorShape(5, 3);
        var s0 = new TensorSlice(new TensorSliceExtent(0, 2), TensorSliceExtent.Full);
        var s1 = new TensorSlice(new TensorSliceExtent(2, 3), TensorSliceExtent.Full);
        var full = Floats(15, 0);
        var p0 = Part(0, 2);
        var p1 = Part(1, 2);
        using (var w = new TensorBundleWriter(p0))
        {
            w.AddSlice("w", shape, s0, DType.Float, full.AsSpan(0, 24));
            w.Add("x", DType.Float, new TensorShape(1), Floats(1, 3));
            w.Finish();
        }
        using (var w = new TensorBundleWriter(p1))
        {
            w.AddSlice("w", shape, s1, DType.Float, full.AsSpan(24));
            w.AddSlice("v", shape, s1, DType.Float, full.AsSpan(24));   // partitioned key first seen in input 1
            w.Finish();
        }
        TensorBundle.Merge([p0, p1], _dir["P"]);
        using var reader = TensorBundleReader.Open(_dir["P"]);
        var entry = reader.GetEntry("w");
        Assert.Equal([s0, s1], entry.Slices);
        Assert.Equal(0, entry.ShardId);
        // TF quirk reproduced: a partitioned entry first seen in input 1 records the merged id of that input's data file.
        Assert.Equal(1, reader.GetEntry("v").ShardId);
        var back = new byte[full.Length];
        reader.ReadSlice("w", TensorSlice.Full(2), back);
        Assert.Equal(full, back);
        var middle = new byte[3 * 2 * 4];   // rows 1..3, columns 1..2: crosses both stored slices
        reader.ReadSlice("w", new TensorSlice(new TensorSliceExtent(1, 3), new TensorSliceExtent(1, 2)), middle);
        var expected = new[] { 4f, 5f, 7f, 8f, 10f, 11f };
        Assert.Equal(expected, MemoryMarshal.Cast<byte, float>(middle).ToArray());
        var ex = Assert.Throws<CheckpointFormatException>(() => reader.ReadSlice("v", TensorSlice.Full(2), new byte[60]));
        Assert.Equal(CheckpointFormatError.InvalidSlice, ex.Error);
        Assert.Contains("does not have sufficient slices", ex.Message, StringComparison.Ordinal);
        Assert.False(reader.HasSufficientSlices("v", new TensorSlice(new TensorSliceExtent(1, 2), TensorSliceExtent.Full)));
        Assert.True(reader.HasSufficientSlices("v", new TensorSlice(new TensorSliceExtent(3, 2), TensorSliceExtent.Full)));
    }

    [Fact]
    public void Merge_MismatchedHeaderVersion_Throws()
    {
        var p0 = Part(0, 2);
        var p1 = Part(1, 2);
        using (var w = new TensorBundleWriter(p0))
        {
            w.Add("a", DType.Float, new TensorShape(1), Floats(1, 0));
            w.Finish();
        }
        using (var w = new TensorBundleWriter(p1, new TensorBundleWriterOptions { Producer = 2 }))
        {
            w.Add("b", DType.Float, new TensorShape(1), Floats(1, 0));
            w.Finish();
        }
        var ex = Assert.Throws<CheckpointFormatException>(() => TensorBundle.Merge([p0, p1], _dir["P"]));
        Assert.Equal(CheckpointFormatError.UnsupportedVersion, ex.Error);
        Assert.False(File.Exists(_dir["P.index"]));
    }

    [Fact]
    public void Merge_MissingInput_ThrowsUnlessAllowed()
    {
        var p0 = Part(0, 2);
        using (var w = new TensorBundleWriter(p0))
        {
            w.Add("a", DType.Float, new TensorShape(1), Floats(1, 0));
            w.Finish();
        }
        Assert.Throws<FileNotFoundException>(() => TensorBundle.Merge([p0, Part(1, 2)], _dir["P"]));
        var header = TensorBundle.Merge([p0, Part(1, 2)], _dir["P"], new TensorBundleMergeOptions { AllowMissingFiles = true });
        Assert.Equal(1, header.ShardCount);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void ReadSlice_RandomPartitioning_EqualsBruteForceRegion(int seed)
    {
        var rng = new Random(seed);
        var shape = new TensorShape(rng.Next(1, 7), rng.Next(1, 6), rng.Next(1, 5));
        var n = (int)shape.ElementCount;
        var full = Enumerable.Range(0, n).Select(i => (float)i).ToArray();
        // Split dimension 0 and 1 into random pieces; store every piece.
        var cut0 = Cuts(rng, shape[0]);
        var cut1 = Cuts(rng, shape[1]);
        using (var w = new TensorBundleWriter(_dir["S"]))
        {
            foreach (var (a0, l0) in cut0)
                foreach (var (a1, l1) in cut1)
                {
                    var slice = new TensorSlice(new TensorSliceExtent(a0, l0), new TensorSliceExtent(a1, l1), TensorSliceExtent.Full);
                    w.AddSlice("t", shape, slice, DType.Float, MemoryMarshal.AsBytes(Region(full, shape, [a0, a1, 0], [l0, l1, shape[2]]).AsSpan()));
                }
            w.Finish();
        }
        using var reader = TensorBundleReader.Open(_dir["S"]);
        for (var q = 0; q < 20; q++)
        {
            var start = new long[3];
            var len = new long[3];
            for (var d = 0; d < 3; d++)
            {
                start[d] = rng.NextInt64(0, shape[d]);
                len[d] = rng.NextInt64(1, shape[d] - start[d] + 1);
            }
            var region = new TensorSlice(Enumerable.Range(0, 3).Select(d => new TensorSliceExtent(start[d], len[d])));
            var got = new float[len[0] * len[1] * len[2]];
            reader.ReadSlice("t", region, MemoryMarshal.AsBytes(got.AsSpan()));
            Assert.Equal(Region(full, shape, start, len), got);
        }
    }

    private static List<(long Start, long Length)> Cuts(Random rng, long dim)
    {
        var list = new List<(long, long)>();
        long s = 0;
        while (s < dim)
        {
            var l = rng.NextInt64(1, dim - s + 1);
            list.Add((s, l));
            s += l;
        }
        return list;
    }

    private static float[] Region(float[] full, TensorShape shape, long[] start, long[] len)
    {
        var result = new List<float>();
        for (var i = start[0]; i < start[0] + len[0]; i++)
            for (var j = start[1]; j < start[1] + len[1]; j++)
                for (var k = start[2]; k < start[2] + len[2]; k++)
                    result.Add(full[(i * shape[1] + j) * shape[2] + k]);
        return [.. result];
    }
}

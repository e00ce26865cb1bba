using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Tests;

/// <summary>CheckpointOptions.Compression end to end (issue 14): save, restore (sync and async), incremental, refusal paths.</summary>
public sealed class CompressedCheckpointTests : IClassFixture<CpuFixture>
{
    private readonly Accelerator _cpu;

    public CompressedCheckpointTests(CpuFixture fixture) { _cpu = fixture.Accelerator; }

    private sealed class Model : AutoTrackable
    {
        public Variable Big { get; }
        public Variable Small { get; }

        public Model(Accelerator acc)
        {
            Big = AddVariable("big", acc, DType.Float, new TensorShape(64, 1025));
            Small = AddVariable("small", acc, DType.Int32, new TensorShape(3));
        }
    }

    private static float[] Smooth(int n, float seed) => Enumerable.Range(0, n).Select(i => MathF.Round(MathF.Cos(i * 0.002f + seed) * 32f) / 32f).ToArray();

    private static CheckpointOptions Compressed() => new() { Compression = new BundleCompressionOptions { BlockSizeInBytes = 64 << 10 } };

    [Fact]
    public async Task CompressedSave_RestoresSyncAndAsync()
    {
        using var dir = new TempDir("ckpt-lz4");
        var model = new Model(_cpu);
        model.Big.Assign<float>(Smooth(64 * 1025, 1f));
        model.Small.Assign<int>([7, 8, 9]);
        using var ckpt = new Checkpoint(("model", model)) { Log = null };
        var prefix = ckpt.Write(dir.File("c"), Compressed());
        using (var reader = TensorBundleReader.Open(prefix))
        {
            Assert.Equal(BundleHeader.CompressedVersion, reader.Header.MinConsumer);
            Assert.NotNull(reader.GetEntry("model/big/.ATTRIBUTES/VARIABLE_VALUE").Compression);
        }
        model.Big.Assign<float>(new float[64 * 1025]);
        ckpt.Restore(prefix).AssertNontrivialMatch();
        Assert.Equal(Smooth(64 * 1025, 1f), model.Big.Read<float>());
        model.Big.Assign<float>(new float[64 * 1025]);
        (await ckpt.RestoreAsync(prefix)).AssertNontrivialMatch();
        Assert.Equal(Smooth(64 * 1025, 1f), model.Big.Read<float>());
        model.Big.Dispose();
        model.Small.Dispose();
    }

    /// <summary>
    /// An asynchronous compressed save (plain staging through the pipeline, compression off the caller's thread) equals the
    /// synchronous one entry for entry — stored bytes included — and a write after the save is staged does not leak in.
    /// </summary>
    [Fact]
    public async Task CompressedAsyncSave_EqualsTheSyncOneEntryForEntry_AndKeepsSnapshotSemantics()
    {
        using var dir = new TempDir("ckpt-lz4-async");
        var model = new Model(_cpu);
        model.Big.Assign<float>(Smooth(64 * 1025, 1f));
        model.Small.Assign<int>([7, 8, 9]);
        await using var ckpt = new Checkpoint(("model", model)) { Log = null };
        var options = new CheckpointOptions { Compression = new BundleCompressionOptions { BlockSizeInBytes = 64 << 10 }, ShardingPolicy = new MaxShardSizePolicy(128 << 10) };
        var sync = ckpt.Write(dir.File("sync"), options);
        var handle = await ckpt.WriteAsync(dir.File("async"), options);
        await ckpt.WaitUntilStagedAsync(model.Big);
        model.Big.Assign<float>(new float[64 * 1025]);   // after staging: must not leak into the async checkpoint
        await handle.Completion;
        Assert.False(Directory.Exists(dir.File("async") + "_temp"));

        using var a = TensorBundleReader.Open(sync);
        using var b = TensorBundleReader.Open(handle.CheckpointPrefix);
        Assert.Equal(a.Header, b.Header);
        Assert.True(a.Header.ShardCount > 1, "the policy spreads the tensors over several data files");
        Assert.Equal(a.EntriesInDataOrder.Select(e => e.Key), b.EntriesInDataOrder.Select(e => e.Key));
        foreach (var e in a.Entries)
        {
            var f = b.GetEntry(e.Key);
            Assert.Equal((e.DType, e.Shape, e.ShardId, e.Offset, e.Size, e.Crc32C, e.StoredSize), (f.DType, f.Shape, f.ShardId, f.Offset, f.Size, f.Crc32C, f.StoredSize));
            Assert.Equal(e.Compression, f.Compression);
            Assert.Equal(StoredBytes(sync, a.Header.ShardCount, e), StoredBytes(handle.CheckpointPrefix, b.Header.ShardCount, f));
        }
        Assert.NotNull(b.GetEntry("model/big/.ATTRIBUTES/VARIABLE_VALUE").Compression);
        ckpt.Restore(handle.CheckpointPrefix).AssertNontrivialMatch();
        Assert.Equal(Smooth(64 * 1025, 1f), model.Big.Read<float>());
        model.Big.Dispose();
        model.Small.Dispose();
    }

    /// <summary>The bytes an entry occupies in its data file, read directly (compressed frames included).</summary>
    private static byte[] StoredBytes(string prefix, int shardCount, BundleEntry e)
    {
        using var fs = File.OpenRead(BundleNaming.DataFile(prefix, e.ShardId, shardCount));
        var bytes = new byte[e.StoredSize];
        fs.Position = e.Offset;
        fs.ReadExactly(bytes);
        return bytes;
    }

    [Fact]
    public async Task CompressedAsyncIncrementalSave_RefusesClearly_WritesNothing()
    {
        using var dir = new TempDir("ckpt-lz4-async-incr");
        var model = new Model(_cpu);
        await using var ckpt = new Checkpoint(("model", model)) { Log = null };
        var manager = new CheckpointManager(ckpt, dir.File("m"), maxToKeep: null) { IncrementalSaves = new IncrementalSaveOptions() };
        var ex = await Assert.ThrowsAsync<NotSupportedException>(async () => await manager.SaveAsync(options: Compressed()));
        Assert.Contains("incremental", ex.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.EnumerateFiles(dir.File("m"), "ckpt-*"));
        model.Big.Dispose();
        model.Small.Dispose();
    }

    [Fact]
    public void CompressedIncrementalSaves_LinkCompressedShards_AndRestore()
    {
        using var dir = new TempDir("ckpt-lz4-incr");
        var model = new Model(_cpu);
        model.Big.Assign<float>(Smooth(64 * 1025, 2f));
        using var ckpt = new Checkpoint(("model", model)) { Log = null };
        var manager = new CheckpointManager(ckpt, dir.File("m"), maxToKeep: 2) { IncrementalSaves = new IncrementalSaveOptions() };
        for (var step = 0; step < 4; step++)
        {
            model.Small.Assign<int>([step, step, step]);
            manager.Save(options: Compressed());
        }
        Assert.Equal(1, manager.LastIncrementalSave!.ShardsLinked);
        using (var reader = TensorBundleReader.Open(manager.LatestCheckpoint!))
        {
            Assert.NotNull(reader.GetEntry("model/big/.ATTRIBUTES/VARIABLE_VALUE").Compression);
            foreach (var e in reader.EntriesInDataOrder) reader.ReadEncodedPayload(e, (_, _) => { });
        }
        model.Big.Assign<float>(new float[64 * 1025]);
        ckpt.Restore(manager.LatestCheckpoint).AssertConsumed();
        Assert.Equal(Smooth(64 * 1025, 2f), model.Big.Read<float>());
        Assert.Equal([3, 3, 3], model.Small.Read<int>());
        // A plain save after compressed ones never links compressed bytes into a plain checkpoint.
        manager.Save();
        Assert.Equal(0, manager.LastIncrementalSave!.ShardsLinked);
        using (var reader = TensorBundleReader.Open(manager.LatestCheckpoint!))
        {
            Assert.Equal(0, reader.Header.MinConsumer);
            Assert.All(reader.Entries, e => Assert.Null(e.Compression));
        }
        model.Big.Dispose();
        model.Small.Dispose();
    }
}

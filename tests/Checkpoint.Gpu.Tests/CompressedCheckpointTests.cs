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
    public async Task CompressedSave_RestoresSyncAndAsync_AndAsyncSaveRefuses()
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
        await Assert.ThrowsAsync<NotSupportedException>(async () => await ckpt.WriteAsync(dir.File("async"), Compressed()));
        Assert.False(File.Exists(dir.File("async") + ".index"));
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

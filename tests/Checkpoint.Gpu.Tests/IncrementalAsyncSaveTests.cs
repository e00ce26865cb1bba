using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Tests;

/// <summary>Incremental saves through <see cref="CheckpointManager.SaveAsync"/> (issue 14): linking from a previous save that may still be queued.</summary>
public sealed class IncrementalAsyncSaveTests : IClassFixture<CpuFixture>
{
    private const int FrozenElements = 4099;
    private const string FrozenKey = "model/frozen/.ATTRIBUTES/VARIABLE_VALUE";
    private readonly Accelerator _cpu;

    public IncrementalAsyncSaveTests(CpuFixture fixture) { _cpu = fixture.Accelerator; }

    private sealed class Model : AutoTrackable, IDisposable
    {
        public Variable Frozen { get; }
        public Variable Adapter { get; }

        public Model(Accelerator acc, float frozenSeed)
        {
            Frozen = AddVariable("frozen", acc, DType.Float, new TensorShape(FrozenElements));
            Adapter = AddVariable("adapter", acc, DType.Float, new TensorShape(17));
            Frozen.Assign<float>(Values(FrozenElements, frozenSeed));
            Adapter.Assign<float>(Values(17, 0f));
        }

        public void Dispose()
        {
            Frozen.Dispose();
            Adapter.Dispose();
        }
    }

    private static float[] Values(int n, float seed) => Enumerable.Range(0, n).Select(i => seed + i * 0.25f).ToArray();

    private static void VerifyAll(string prefix)
    {
        using var reader = TensorBundleReader.Open(prefix);
        foreach (var e in reader.EntriesInDataOrder) reader.ReadEncodedPayload(e, (_, _) => { });
    }

    private (float[] Frozen, float[] Adapter) RestoreValues(string prefix)
    {
        using var model = new Model(_cpu, -7f);
        using var ckpt = new Checkpoint(("model", model)) { Log = null };
        ckpt.Restore(prefix).AssertConsumed();
        return (model.Frozen.Read<float>(), model.Adapter.Read<float>());
    }

    /// <summary>The (dtype, shape, CRC) of every tensor entry except the object graph, by key.</summary>
    private static Dictionary<string, (DType, TensorShape, uint)> Entries(string prefix)
    {
        using var reader = TensorBundleReader.Open(prefix);
        return reader.Entries.Where(e => e.Key != CheckpointKeys.ObjectGraph).ToDictionary(e => e.Key, e => (e.DType, e.Shape, e.Crc32C));
    }

    [Fact]
    public async Task AsyncIncremental_RestoresLikeSyncIncrementalAndFullSaves_LinkingFromAStillQueuedSave()
    {
        using var dir = new TempDir("incr-async");
        using var model = new Model(_cpu, 1f);
        await using var ckpt = new Checkpoint(("model", model)) { Log = null };
        using var sameModel = new Model(_cpu, 1f);
        await using var syncCkpt = new Checkpoint(("model", sameModel)) { Log = null };
        var asyncManager = new CheckpointManager(ckpt, dir.File("async"), maxToKeep: null) { IncrementalSaves = new IncrementalSaveOptions() };
        var syncManager = new CheckpointManager(syncCkpt, dir.File("sync"), maxToKeep: null) { IncrementalSaves = new IncrementalSaveOptions() };
        var handles = new List<Pipeline.SaveHandle>();
        var syncPrefixes = new List<string>();
        for (var step = 1; step <= 4; step++)
        {
            // The adapter is in every save: wait until the queued ones no longer need its bytes (the pipeline's contract).
            await ckpt.WaitUntilStagedAsync(model.Adapter);
            model.Adapter.Assign<float>(Values(17, step * 100f));
            sameModel.Adapter.Assign<float>(Values(17, step * 100f));
            // Not awaited to completion: the next save is planned while this one may still be queued.
            var handle = (await asyncManager.SaveAsync())!;
            handles.Add(handle);
            syncPrefixes.Add(syncManager.Save()!);
        }
        foreach (var h in handles) await h.Completion;
        Assert.Equal(1, asyncManager.LastIncrementalSave!.ShardsLinked);    // the 4th links the 3rd's stable file
        Assert.Equal(FrozenElements * 4L, asyncManager.LastIncrementalSave.BytesReused);
        Assert.True(asyncManager.LastIncrementalSave.BytesWritten < 1024, $"got {asyncManager.LastIncrementalSave.BytesWritten} bytes written");

        var full = ckpt.Write(dir.File("full/ckpt"));
        for (var i = 0; i < handles.Count; i++)
        {
            var prefix = handles[i].CheckpointPrefix;
            VerifyAll(prefix);
            var restored = RestoreValues(prefix);
            Assert.Equal(Values(FrozenElements, 1f), restored.Frozen);
            Assert.Equal(Values(17, (i + 1) * 100f), restored.Adapter);
            Assert.Equal(RestoreValues(syncPrefixes[i]).Adapter, restored.Adapter);
            Assert.Equal(Entries(syncPrefixes[i]), Entries(prefix));
        }
        Assert.Equal(Entries(full), Entries(handles[^1].CheckpointPrefix));
        Assert.Empty(Directory.GetDirectories(dir.File("async")));   // no temporary part directory left
    }

    [Fact]
    public async Task AsyncIncremental_WriteAfterQueueingDoesNotLeakIn_WriteBeforeIsNotSkipped()
    {
        using var dir = new TempDir("incr-async-mut");
        using var model = new Model(_cpu, 1f);
        await using var ckpt = new Checkpoint(("model", model)) { Log = null };
        var manager = new CheckpointManager(ckpt, dir.File("m"), maxToKeep: null) { IncrementalSaves = new IncrementalSaveOptions() };
        for (var step = 1; step <= 2; step++)
        {
            await ckpt.WaitUntilStagedAsync(model.Adapter);
            model.Adapter.Assign<float>(Values(17, step * 100f));
            await (await manager.SaveAsync())!.Completion;
        }
        // Save 3 links the frozen tensor; overwrite it right after queueing (its bytes come from ckpt-2, never the device).
        var third = (await manager.SaveAsync())!;
        await ckpt.WaitUntilStagedAsync(model.Frozen);
        model.Frozen.Assign<float>(Values(FrozenElements, 50f));
        // Save 4 is queued at once, before save 3 finished: the write came before it, so it must not be skipped.
        var fourth = (await manager.SaveAsync())!;
        await third.Completion;
        await fourth.Completion;
        Assert.True(manager.LastIncrementalSave!.BytesWritten >= FrozenElements * 4L, "save 4 writes the frozen tensor again");

        Assert.Equal(Values(FrozenElements, 1f), RestoreValues(third.CheckpointPrefix).Frozen);
        Assert.Equal(Values(FrozenElements, 50f), RestoreValues(fourth.CheckpointPrefix).Frozen);
        VerifyAll(third.CheckpointPrefix);
        VerifyAll(fourth.CheckpointPrefix);
        using (var reader = TensorBundleReader.Open(third.CheckpointPrefix))
        using (var before = TensorBundleReader.Open(Path.Combine(dir.File("m"), "ckpt-2")))
            Assert.Equal(before.GetEntry(FrozenKey).Crc32C, reader.GetEntry(FrozenKey).Crc32C);
    }

    [Fact]
    public async Task AsyncIncremental_PruneThenVerify_EveryRemainingCheckpointIsIntact()
    {
        using var dir = new TempDir("incr-async-prune");
        using var model = new Model(_cpu, 1f);
        await using var ckpt = new Checkpoint(("model", model)) { Log = null };
        var manager = new CheckpointManager(ckpt, dir.File("m"), maxToKeep: 2) { IncrementalSaves = new IncrementalSaveOptions() };
        var handles = new List<Pipeline.SaveHandle>();
        for (var step = 1; step <= 6; step++)
        {
            await ckpt.WaitUntilStagedAsync(model.Adapter);
            model.Adapter.Assign<float>(Values(17, step * 100f));
            var handle = (await manager.SaveAsync())!;
            handles.Add(handle);
        }
        foreach (var h in handles) await h.Completion;
        Assert.Equal(2, manager.Checkpoints.Count);
        Assert.Equal(1, manager.LastIncrementalSave!.ShardsLinked);   // save 6 links save 5's stable file (save 4 is pruned after)
        foreach (var remaining in manager.Checkpoints)
        {
            VerifyAll(remaining);
            Assert.Equal(Values(FrozenElements, 1f), RestoreValues(remaining).Frozen);
        }
        Assert.Equal(Values(17, 600f), RestoreValues(manager.Checkpoints[^1]).Adapter);
        Assert.Empty(Directory.GetDirectories(dir.File("m")));
    }

    /// <summary>
    /// Save 3 fails late (its part's commit rename) after save 4 was planned to link from it: save 4 fails too, naming its
    /// base, nothing of either is published, and save 5 (planned after the failure is known) writes everything.
    /// </summary>
    [Fact]
    public async Task AsyncIncremental_BaseSaveFails_DependentSaveFailsClearly_NextOneIsFull()
    {
        using var dir = new TempDir("incr-async-fail");
        using var model = new Model(_cpu, 1f);
        await using var ckpt = new Checkpoint(("model", model)) { Log = null };
        var storage = new FaultInjectingShardStorage(LocalShardStorage.Instance) { WriteDelay = TimeSpan.FromMilliseconds(300) };
        await using var pipeline = new Pipeline.CheckpointPipeline(_cpu, new Pipeline.CheckpointPipelineOptions { Storage = storage });
        var options = new CheckpointOptions { Pipeline = pipeline };
        var manager = new CheckpointManager(ckpt, dir.File("m"), maxToKeep: null) { IncrementalSaves = new IncrementalSaveOptions() };
        for (var step = 1; step <= 2; step++)
        {
            await ckpt.WaitUntilStagedAsync(model.Adapter);
            model.Adapter.Assign<float>(Values(17, step * 100f));
            await (await manager.SaveAsync(options: options))!.Completion;
        }
        storage.FailMoveWhen = path => path.Contains("ckpt-3_temp", StringComparison.Ordinal);
        await ckpt.WaitUntilStagedAsync(model.Adapter);
        model.Adapter.Assign<float>(Values(17, 300f));
        var third = (await manager.SaveAsync(options: options))!;
        var fourth = (await manager.SaveAsync(options: options))!;   // planned while the third is still writing (300 ms per write)
        await Assert.ThrowsAnyAsync<IOException>(() => third.Completion);
        var error = await Assert.ThrowsAnyAsync<IOException>(() => fourth.Completion);
        Assert.Contains("base checkpoint", error.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(third.CheckpointPrefix + ".index"));
        Assert.False(File.Exists(fourth.CheckpointPrefix + ".index"));

        storage.FailMoveWhen = null;
        var fifth = (await manager.SaveAsync(options: options))!;
        await fifth.Completion;
        Assert.Equal(0, manager.LastIncrementalSave!.ShardsLinked);
        VerifyAll(fifth.CheckpointPrefix);
        var restored = RestoreValues(fifth.CheckpointPrefix);
        Assert.Equal(Values(FrozenElements, 1f), restored.Frozen);
        Assert.Equal(Values(17, 300f), restored.Adapter);
    }

    /// <summary>Async saves still queued, then a synchronous incremental save: it waits for them, links from the last, and is recorded last.</summary>
    [Fact]
    public async Task SyncIncrementalAfterQueuedAsyncSaves_LinksFromTheLastAndIsRecordedLast()
    {
        using var dir = new TempDir("incr-mixed");
        using var model = new Model(_cpu, 1f);
        await using var ckpt = new Checkpoint(("model", model)) { Log = null };
        var manager = new CheckpointManager(ckpt, dir.File("m"), maxToKeep: null) { IncrementalSaves = new IncrementalSaveOptions() };
        var handles = new List<Pipeline.SaveHandle>();
        for (var step = 1; step <= 2; step++)
        {
            await ckpt.WaitUntilStagedAsync(model.Adapter);
            model.Adapter.Assign<float>(Values(17, step * 100f));
            handles.Add((await manager.SaveAsync())!);
        }
        await ckpt.WaitUntilStagedAsync(model.Adapter);
        model.Adapter.Assign<float>(Values(17, 300f));
        var third = manager.Save()!;
        Assert.All(handles, h => Assert.True(h.Completion.IsCompletedSuccessfully));
        Assert.Equal(1, manager.LastIncrementalSave!.ShardsLinked);
        Assert.True(CheckpointManager.TryGetLatestCheckpoint(dir.File("m"), out var latest));
        Assert.Equal(Path.GetFullPath(third), Path.GetFullPath(latest));
        VerifyAll(third);
        var restored = RestoreValues(third);
        Assert.Equal(Values(FrozenElements, 1f), restored.Frozen);
        Assert.Equal(Values(17, 300f), restored.Adapter);
    }
}

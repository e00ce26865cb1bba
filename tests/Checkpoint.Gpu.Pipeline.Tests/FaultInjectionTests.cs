using CheckpointGpu.TestSupport;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;

namespace CheckpointGpu.Pipeline.Tests;

/// <summary>Failures injected through <see cref="FaultInjectingShardStorage"/>: the awaited save surfaces a clear error, temp files are gone, the previous checkpoint and the state file are intact.</summary>
public sealed class FaultInjectionTests
{
    private static readonly long[] Sizes = [4097, 100_003, 17, 70_000];

    private static async Task<(Exception Error, TempDir Dir)> FailSecondSave(Action<FaultInjectingShardStorage> arm, int slotSize = 8192)
    {
        var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, Sizes, shardCount: 2);
        var storage = new FaultInjectingShardStorage(LocalShardStorage.Instance);
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = slotSize, SlotCount = 3, Storage = storage });
        model.SetStep(1);
        await pipeline.QueueSave(dir.Prefix("ckpt-1"), SavePlan.Create(model.Items(), 2), (p, _) => { BundleCommit.PublishLatest(p); return default; }).Completion;
        storage.ResetCounters();
        arm(storage);
        model.SetStep(2);
        var handle = pipeline.QueueSave(dir.Prefix("ckpt-2"), SavePlan.Create(model.Items(), 2), (p, _) => { BundleCommit.PublishLatest(p); return default; });
        var error = await Assert.ThrowsAnyAsync<Exception>(() => handle.Completion);
        // Snapshotted is complete: faulted when the failure hit while streaming (after all device reads drained),
        // successful when it hit during the commit; barriers do not hang either way.
        Assert.True(handle.Snapshotted.IsCompleted);
        await handle.WaitUntilStagedAsync(model.Buffers[0]);
        // Earlier checkpoint and state file intact; the failed one left nothing behind.
        Assert.Equal(Path.GetFullPath(dir.Prefix("ckpt-1")), CheckpointStateFile.LatestCheckpoint(dir.Path));
        model.AssertCheckpoint(dir.Prefix("ckpt-1"), 1);
        Assert.Empty(Directory.EnumerateFiles(dir.Path, "ckpt-2*"));
        Assert.Empty(Files.Leftovers(dir.Path));
        // The pipeline is still usable.
        storage.FailWriteNumber = 0; storage.ShortWriteNumber = 0; storage.DiskCapacityInBytes = -1; storage.FailMoveWhen = null; storage.FailFlushWhen = null;
        model.SetStep(3);
        await pipeline.QueueSave(dir.Prefix("ckpt-3"), SavePlan.Create(model.Items(), 2)).Completion;
        model.AssertCheckpoint(dir.Prefix("ckpt-3"), 3);
        return (error, dir);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    public async Task SaveAsync_NthWriteFails_SurfacesIOExceptionAndKeepsPreviousCheckpoint(int n)
    {
        var (error, dir) = await FailSecondSave(s => s.FailWriteNumber = n);
        using (dir)
        {
            var io = Assert.IsType<IOException>(error);
            Assert.Contains($"injected write failure (write #{n}", io.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task SaveAsync_ShortWrite_SurfacesIOException()
    {
        var (error, dir) = await FailSecondSave(s => s.ShortWriteNumber = 3);
        using (dir) Assert.Contains("short write", Assert.IsType<IOException>(error).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SaveAsync_DiskFull_SurfacesENOSPC()
    {
        var (error, dir) = await FailSecondSave(s => s.DiskCapacityInBytes = 50_000);
        using (dir) Assert.Contains("No space left on device", Assert.IsType<IOException>(error).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SaveAsync_CrashAfterDataBeforeIndexRename_NothingOfTheNewCheckpointRemains()
    {
        var (error, dir) = await FailSecondSave(s => s.FailMoveWhen = p => p.EndsWith(".index", StringComparison.Ordinal));
        using (dir) Assert.Contains("injected rename failure", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SaveAsync_DataFlushFails_SurfacesIOException()
    {
        var (error, dir) = await FailSecondSave(s => s.FailFlushWhen = p => p.Contains(".data-00001", StringComparison.Ordinal));
        using (dir) Assert.Contains("injected flush failure", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SaveAsync_FailureWithSeveralWritesInFlight_FirstFailureSurfacesAndLaterOnesAreAttached()
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, [200_000], withHostAndString: false);
        model.SetStep(1);
        var storage = new FaultInjectingShardStorage(LocalShardStorage.Instance) { DiskCapacityInBytes = 0, WriteDelay = TimeSpan.FromMilliseconds(20) };
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 4096, SlotCount = 4, WriterCount = 3, Storage = storage });
        var handle = pipeline.QueueSave(dir.Prefix("ckpt-1"), SavePlan.Create(model.Items()));
        var first = await Assert.ThrowsAsync<IOException>(() => handle.Completion);
        Assert.Same(first, handle.Completion.Exception!.InnerExceptions[0]);
        Assert.All(handle.Completion.Exception.InnerExceptions, e => Assert.IsNotType<OperationCanceledException>(e));
        Assert.Empty(Directory.EnumerateFiles(dir.Path));
    }

    [Fact]
    public async Task SaveAsync_CancelledMidStream_DrainsAndRemovesTempFiles()
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, [400_000], withHostAndString: false);
        model.SetStep(1);
        var storage = new FaultInjectingShardStorage(LocalShardStorage.Instance) { WriteDelay = TimeSpan.FromMilliseconds(5) };
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 4096, SlotCount = 2, Storage = storage });
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(60));
        var handle = pipeline.QueueSave(dir.Prefix("ckpt-1"), SavePlan.Create(model.Items()), cancellationToken: cts.Token);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => handle.Completion);
        Assert.Empty(Directory.EnumerateFiles(dir.Path));
        // The ring came back whole: a full save still works.
        storage.WriteDelay = TimeSpan.Zero;
        await pipeline.QueueSave(dir.Prefix("ckpt-2"), SavePlan.Create(model.Items())).Completion;
        model.AssertCheckpoint(dir.Prefix("ckpt-2"), 1);
    }

    [Fact]
    public async Task FailWriteWhen_OnlyMatchingShardFails_BlockWriteWhen_HangsUntilCancelled_BytesReadCounts()
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, Sizes, shardCount: 2);
        var storage = new FaultInjectingShardStorage(LocalShardStorage.Instance) { FailWriteWhen = p => p.Contains(".data-00001-of-00002", StringComparison.Ordinal) };
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 8192, SlotCount = 3, Storage = storage });
        model.SetStep(1);
        var failed = pipeline.QueueSave(dir.Prefix("ckpt-1"), SavePlan.Create(model.Items(), 2));
        var error = await Assert.ThrowsAsync<IOException>(() => failed.Completion);
        Assert.Contains("data-00001-of-00002", error.Message, StringComparison.Ordinal);

        storage.FailWriteWhen = null;
        var blocked = new List<string>();
        storage.BlockWriteWhen = p => p.Contains("ckpt-2", StringComparison.Ordinal);
        storage.WriteBlocked = p => { lock (blocked) blocked.Add(p); };
        using var cts = new CancellationTokenSource();
        var hung = pipeline.QueueSave(dir.Prefix("ckpt-2"), SavePlan.Create(model.Items(), 2), null, cts.Token);
        await Task.Delay(300);
        Assert.False(hung.Completion.IsCompleted);
        lock (blocked) Assert.NotEmpty(blocked);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => hung.Completion.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Empty(Files.Leftovers(dir.Path));

        storage.BlockWriteWhen = null;
        await pipeline.QueueSave(dir.Prefix("ckpt-3"), SavePlan.Create(model.Items(), 2)).Completion;
        storage.ResetCounters();
        await using (var session = pipeline.OpenRestore(dir.Prefix("ckpt-3")))
            await session.PrefetchAsync([TestModel.Key(1)]);   // 100,003 bytes, read in O_DIRECT blocks
        Assert.InRange(storage.BytesRead, 100_003, 100_003 + 2 * IShardFile.DirectIOAlignmentInBytes);
    }
}

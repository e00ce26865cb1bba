using CheckpointGpu.TestSupport;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;

namespace CheckpointGpu.Pipeline.Tests;

/// <summary>Async = sync: saving every step while mutating right after the snapshot (or barrier) gives the same files as synchronous saves.</summary>
public sealed class AsyncSaveTests
{
    private static readonly long[] Sizes = [70_000, 4097, 1, 130_001, 4096];

    public static TheoryData<AcceleratorKind, SnapshotPolicy> Cases()
    {
        var data = new TheoryData<AcceleratorKind, SnapshotPolicy>();
        foreach (var k in Backends.KindList)
            foreach (var p in Enum.GetValues<SnapshotPolicy>())
                data.Add(k, p);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task SaveAsync_MutateRightAfterSnapshotOrBarrier_FilesEqualSynchronousSaves(AcceleratorKind kind, SnapshotPolicy policy)
    {
        const int steps = 5;
        using var dir = new TempDir();
        using var acc = Accelerator.Create(kind);
        using var model = new TestModel(acc, Sizes, shardCount: 2);
        // A tiny ring, so most tensors are still unstaged when the next step starts mutating.
        var options = new CheckpointPipelineOptions { SlotSizeInBytes = 4096, SlotCount = 2, SnapshotPolicy = policy };
        await using (var pipeline = new CheckpointPipeline(acc, options))
        {
            var handles = new List<SaveHandle>();
            model.SetStep(0);
            for (var step = 1; step <= steps; step++)
            {
                var h = pipeline.QueueSave(dir.Prefix($"async-{step}"), SavePlan.Create(model.Items(), 2));
                handles.Add(h);
                if (policy == SnapshotPolicy.WriteBarriers)
                {
                    // The optimizer's pattern: a barrier per variable, then its update.
                    for (var i = 0; i < model.Buffers.Length; i++)
                    {
                        await pipeline.WaitUntilStagedAsync(model.Buffers[i]);
                        Data.Upload(acc, model.Buffers[i], model.Expected(i, step));
                    }
                    await h.Snapshotted; // host/encoded sources of the next step are rebuilt below
                    model.SetStep(step);
                }
                else
                {
                    await h.Snapshotted;
                    model.SetStep(step);
                }
            }
            await Task.WhenAll(handles.Select(h => h.Completion));
        }
        // Reference: synchronous saves of the same steps (await completion before mutating).
        await using (var pipeline = new CheckpointPipeline(acc))
        {
            for (var step = 0; step < steps; step++)
            {
                model.SetStep(step);
                await pipeline.QueueSave(dir.Prefix($"sync-{step + 1}"), SavePlan.Create(model.Items(), 2)).Completion;
            }
        }
        for (var step = 1; step <= steps; step++)
        {
            Files.AssertSameBundle(dir.Prefix($"sync-{step}"), dir.Prefix($"async-{step}"), 2);
            model.AssertCheckpoint(dir.Prefix($"async-{step}"), step - 1);
        }
    }

    [Theory]
    [MemberData(nameof(Backends.Kinds), MemberType = typeof(Backends))]
    public async Task WaitUntilStagedAsync_WriteBarriersUnstagedVariable_ReturnsBeforeSnapshotViaDeviceClone(AcceleratorKind kind)
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(kind);
        using var model = new TestModel(acc, [300_000, 300_000], withHostAndString: false);
        model.SetStep(1);
        var storage = new FaultInjectingShardStorage(LocalShardStorage.Instance) { WriteDelay = TimeSpan.FromMilliseconds(10) };
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions
        { SlotSizeInBytes = 4096, SlotCount = 2, SnapshotPolicy = SnapshotPolicy.WriteBarriers, Storage = storage });
        var h = pipeline.QueueSave(dir.Prefix("ckpt-1"), SavePlan.Create(model.Items()));
        // The last variable is far from staged (the slow disk holds the ring); its barrier clones it instead.
        await pipeline.WaitUntilStagedAsync(model.Buffers[1]);
        Assert.False(h.Snapshotted.IsCompleted, "the barrier should not have waited for the whole save");
        Data.Upload(acc, model.Buffers[1], new byte[300_000]); // mutate right away
        await pipeline.WaitUntilStagedAsync(model.Buffers[0]);
        Data.Upload(acc, model.Buffers[0], new byte[300_000]);
        await h.Completion;
        // The checkpoint holds step 1's values, not the zeros written after the barriers.
        using var r = TensorBundleReader.Open(dir.Prefix("ckpt-1"));
        for (var i = 0; i < 2; i++)
        {
            var e = r.GetEntry(TestModel.Key(i));
            var got = new byte[e.Size];
            r.ReadTensor(e, got);
            Assert.True(model.Expected(i, 1).AsSpan().SequenceEqual(got));
        }
    }

    [Fact]
    public async Task WaitUntilStagedAsync_NoPendingSave_CompletesSynchronously()
    {
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var buffer = acc.Allocate(16);
        await using var pipeline = new CheckpointPipeline(acc);
        Assert.True(pipeline.WaitUntilStagedAsync(buffer).IsCompletedSuccessfully);
    }
}

using System.Collections.Concurrent;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;

namespace CheckpointGpu.Pipeline.Tests;

/// <summary>IO settings apply per save and restore: the ring is re-shaped between operations, never frozen at construction.</summary>
public sealed class PerOperationOptionsTests
{
    private static readonly long[] Sizes = [1, 4097, (1 << 20) + 3, 65536, 12];

    [Fact]
    public async Task QueueSaveAndOpenRestore_WithOptions_RunWithThatRingShape_AndTheNextOperationReshapesIt()
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, Sizes, shardCount: 2);
        // Constructed with the defaults (8 × 8 MiB).
        await using var pipeline = new CheckpointPipeline(acc);
        Assert.Equal((long)CheckpointPipelineOptions.DefaultSlotCount * CheckpointPipelineOptions.DefaultSlotSizeInBytes, pipeline.RingSizeInBytes);

        // Save 1: 3 slots of 16 KiB, two writers.
        var small = new ConcurrentQueue<SaveTraceEvent>();
        model.SetStep(1);
        var p1 = dir.Prefix("ckpt-1");
        await pipeline.QueueSave(p1, SavePlan.Create(model.Items(), 2),
            new CheckpointPipelineOptions { SlotSizeInBytes = 16384, SlotCount = 3, WriterCount = 2, SaveTrace = small.Enqueue }).Completion;
        model.AssertCheckpoint(p1, 1);
        Assert.Equal(3L * 16384, pipeline.RingSizeInBytes);
        Assert.NotEmpty(small);
        Assert.All(small, e => Assert.InRange(e.Slot, 0, 2));
        Assert.All(small, e => Assert.InRange(e.LengthInBytes, 1, 16384));

        // Save 2 on the same pipeline: 2 slots of 64 KiB, one writer; the first trace sees nothing of it.
        var larger = new ConcurrentQueue<SaveTraceEvent>();
        var smallCount = small.Count;
        model.SetStep(2);
        var p2 = dir.Prefix("ckpt-2");
        await pipeline.QueueSave(p2, SavePlan.Create(model.Items(), 2),
            new CheckpointPipelineOptions { SlotSizeInBytes = 65536, SlotCount = 2, WriterCount = 1, SaveTrace = larger.Enqueue }).Completion;
        model.AssertCheckpoint(p2, 2);
        Assert.Equal(smallCount, small.Count);
        Assert.Equal(2L * 65536, pipeline.RingSizeInBytes);
        Assert.All(larger, e => Assert.InRange(e.Slot, 0, 1));
        Assert.Contains(larger, e => e.LengthInBytes > 16384);
        Assert.All(larger.Where(e => e.Stage != SaveTraceStage.DeviceCopy), e => Assert.Equal(0, e.Writer));

        // A save naming no options runs with the constructor's: the default ring comes back.
        model.SetStep(3);
        var p3 = dir.Prefix("ckpt-3");
        await pipeline.QueueSave(p3, SavePlan.Create(model.Items(), 2)).Completion;
        model.AssertCheckpoint(p3, 3);
        Assert.Equal((long)CheckpointPipelineOptions.DefaultSlotCount * CheckpointPipelineOptions.DefaultSlotSizeInBytes, pipeline.RingSizeInBytes);

        // A restore with options of its own: 4 slots of 4 KiB (tensors larger than the ring go through scratch buffers).
        var targets = Sizes.Select(n => acc.Allocate(n)).ToArray();
        try
        {
            await using (var session = pipeline.OpenRestore(TensorBundlePartIndex.Read(p2), new CheckpointPipelineOptions { SlotSizeInBytes = 4096, SlotCount = 4, ReaderCount = 1 }))
                await session.RestoreAsync(targets.Select((b, i) => new RestoreTarget(TestModel.Key(i), b.AsView())).ToArray());
            Assert.Equal(4L * 4096, pipeline.RingSizeInBytes);
            for (var i = 0; i < Sizes.Length; i++) Assert.True(model.Expected(i, 2).AsSpan().SequenceEqual(Data.Download(acc, targets[i])), $"tensor {i}");
        }
        finally
        {
            foreach (var t in targets) t.Dispose();
        }
    }
}

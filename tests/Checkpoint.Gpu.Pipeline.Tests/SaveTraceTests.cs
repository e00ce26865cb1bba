using System.Collections.Concurrent;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;

namespace CheckpointGpu.Pipeline.Tests;

public sealed class SaveTraceTests
{
    [Fact]
    public async Task SaveTrace_EveryChunkCopiedChecksummedAndWrittenOnce_InOrder_CoveringTheDataFiles()
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, [1, 4097, (1 << 20) + 3, 65536, 12], shardCount: 2);
        model.SetStep(1);
        var events = new ConcurrentQueue<SaveTraceEvent>();
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions
        { SlotSizeInBytes = 16384, SlotCount = 3, WriterCount = 2, SaveTrace = events.Enqueue });
        var prefix = dir.Prefix("ckpt-1");
        await pipeline.QueueSave(prefix, SavePlan.Create(model.Items(), 2)).Completion;
        model.AssertCheckpoint(prefix, 1);

        var byChunk = events.GroupBy(e => (e.Shard, e.FileOffset)).ToArray();
        foreach (var chunk in byChunk)
        {
            var stages = chunk.OrderBy(e => e.Stage).ToArray();
            Assert.Equal([SaveTraceStage.DeviceCopy, SaveTraceStage.Checksum, SaveTraceStage.Write], stages.Select(e => e.Stage));
            Assert.All(stages, e => Assert.InRange(e.Slot, 0, 2));
            Assert.Equal(-1, stages[0].Writer);
            Assert.InRange(stages[1].Writer, 0, 1);
            Assert.Equal(stages[1].Writer, stages[2].Writer);
            for (var i = 0; i < 3; i++) Assert.True(stages[i].StartTimestamp <= stages[i].EndTimestamp);
            Assert.True(stages[0].EndTimestamp <= stages[1].StartTimestamp && stages[1].EndTimestamp <= stages[2].StartTimestamp);
        }
        // The written chunks tile each data file exactly (sizes from the files on disk, not from the plan).
        using var reader = TensorBundleReader.Open(prefix);
        for (var s = 0; s < 2; s++)
        {
            var writes = events.Where(e => e.Stage == SaveTraceStage.Write && e.Shard == s).OrderBy(e => e.FileOffset).ToArray();
            long expectedOffset = 0;
            foreach (var w in writes)
            {
                Assert.Equal(expectedOffset, w.FileOffset);
                expectedOffset += w.LengthInBytes;
            }
            Assert.Equal(new FileInfo(reader.GetDataFilePath(s)).Length, expectedOffset);
        }
        Assert.True(byChunk.Length > 3 * 2, "the ring was reused: more chunks than slots");
    }
}

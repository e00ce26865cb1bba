using System.Collections.Concurrent;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Tests;

/// <summary>
/// <see cref="CheckpointOptions.IO"/> is read per save and restore: changing it takes effect on the next call on the same
/// checkpoint object (whose IO pipeline was created by the first call), not frozen when that pipeline was built.
/// </summary>
public sealed class IOOptionsPerCallTests(CpuFixture cpu) : IClassFixture<CpuFixture>
{
    [Fact]
    public void Write_ChangedIOOptions_NextSaveAndRestoreUseThem()
    {
        using var dir = new TempDir("io-per-call");
        var values = Enumerable.Range(0, 1 << 18).Select(i => (float)i * 0.5f).ToArray();   // 1 MiB
        var root = new AutoTrackable();
        using var v = Variable.Create(root, "v", cpu.Accelerator, DType.Float, new TensorShape(values.Length), VariableInitializer.FromValues<float>(values));
        using var checkpoint = new Checkpoint(("model", root)) { Log = null };

        // First save: creates the checkpoint's IO pipeline with 3 slots of 16 KiB.
        var first = new ConcurrentQueue<SaveTraceEvent>();
        checkpoint.Write(dir.File("a"), new CheckpointOptions { IO = new CheckpointPipelineOptions { SlotSizeInBytes = 16384, SlotCount = 3, SaveTrace = first.Enqueue } });
        Assert.NotEmpty(first);
        Assert.All(first, e => Assert.InRange(e.LengthInBytes, 1, 16384));
        var firstCount = first.Count;

        // Second save, other IO settings: 2 slots of 256 KiB, one writer. Its chunks are larger than the first ring's slots.
        var second = new ConcurrentQueue<SaveTraceEvent>();
        checkpoint.Write(dir.File("b"), new CheckpointOptions
            { IO = new CheckpointPipelineOptions { SlotSizeInBytes = 256 << 10, SlotCount = 2, WriterCount = 1, SaveTrace = second.Enqueue } });
        Assert.Equal(firstCount, first.Count);
        Assert.NotEmpty(second);
        Assert.Contains(second, e => e.LengthInBytes > 16384);
        Assert.All(second, e => Assert.InRange(e.Slot, 0, 1));
        Assert.All(second.Where(e => e.Stage != SaveTraceStage.DeviceCopy), e => Assert.Equal(0, e.Writer));

        // Both checkpoints hold the variable's bytes (read by Format's reader, not by the pipeline).
        foreach (var name in new[] { "a", "b" })
        {
            using var reader = TensorBundleReader.Open(dir.File(name));
            var stored = new float[values.Length];
            reader.ReadTensor(reader.GetEntry("model/v/.ATTRIBUTES/VARIABLE_VALUE"), System.Runtime.InteropServices.MemoryMarshal.AsBytes(stored.AsSpan()));
            Assert.Equal(values, stored);
        }

        // A restore through the same checkpoint object with yet other settings (4 slots of 4 KiB, one reader).
        v.Assign<float>(new float[values.Length]);
        // (Write stores no save counter, so only the value is checked.)
        checkpoint.Restore(dir.File("b"), new CheckpointOptions { IO = new CheckpointPipelineOptions { SlotSizeInBytes = 4096, SlotCount = 4, ReaderCount = 1 } });
        Assert.Equal(values, v.Read<float>());
    }
}

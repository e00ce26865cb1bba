using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Tests;

/// <summary>
/// A model spread over two accelerators (CPU + OpenCL) saves through one plan: one copy engine per accelerator feeding the
/// same ring and writers (TF's MultiDeviceSaver), no synchronous host read, and the files are byte-identical to the save of
/// the same values held on one accelerator.
/// </summary>
public sealed class MultiAcceleratorSaveTests(CpuFixture cpu) : IClassFixture<CpuFixture>
{
    private sealed class TwoLayers : AutoTrackable
    {
        public TwoLayers(Accelerator first, Accelerator second)
        {
            // Odd sizes: tensors end mid-slot and span slots, so one slot holds bytes of both accelerators.
            A = AddVariable("a", first, DType.Float, new TensorShape(3, 1027));
            B = AddVariable("b", second, DType.Float, new TensorShape(2053));
            C = AddVariable("c", first, DType.Int64, new TensorShape(17));
            A.Assign(Enumerable.Range(0, 3 * 1027).Select(i => i * 0.5f).ToArray().AsSpan());
            B.Assign(Enumerable.Range(0, 2053).Select(i => -i * 0.25f).ToArray().AsSpan());
            C.Assign(Enumerable.Range(0, 17).Select(i => (long)i << 40).ToArray().AsSpan());
        }

        public Variable A { get; }
        public Variable B { get; }
        public Variable C { get; }
    }

    [OpenClCorpusFact]
    public async Task CpuPlusOpenCl_SyncAndAsync_OnePlan_ByteIdenticalToSingleAccelerator()
    {
        using var dir = new TempDir("multi-acc");
        using var cl = Accelerator.Create(AcceleratorKind.OpenCL);
        // A small ring: the 20 KiB model crosses several slots.
        var io = new CheckpointPipelineOptions { SlotSizeInBytes = 8192, SlotCount = 2 };

        var single = new TwoLayers(cpu.Accelerator, cpu.Accelerator);
        using (var checkpoint = new Checkpoint(("model", single)) { Log = null })
            checkpoint.Write(dir.File("single"), new CheckpointOptions { IO = io });

        var spread = new TwoLayers(cpu.Accelerator, cl);
        await using (var checkpoint = new Checkpoint(("model", spread)) { Log = null })
        {
            checkpoint.Write(dir.File("sync"), new CheckpointOptions { IO = io });
            var handle = await checkpoint.WriteAsync(dir.File("async"), new CheckpointOptions { IO = io });
            await handle.Completion;
            // One plan, every variable a device source on its own accelerator (no host copies made while planning).
            var a = handle.Plan.Tensors.Single(t => t.Key == "model/a/.ATTRIBUTES/VARIABLE_VALUE").Item.Source;
            var b = handle.Plan.Tensors.Single(t => t.Key == "model/b/.ATTRIBUTES/VARIABLE_VALUE").Item.Source;
            Assert.Equal((SaveSourceKind.Device, SaveSourceKind.Device), (a.Kind, b.Kind));
            Assert.NotSame(a.Device.Buffer!.Accelerator, b.Device.Buffer!.Accelerator);
        }
        foreach (var name in new[] { "sync", "async" })
        {
            Assert.Equal(File.ReadAllBytes(dir.File("single.index")), File.ReadAllBytes(dir.File(name + ".index")));
            Assert.Equal(File.ReadAllBytes(dir.File("single.data-00000-of-00001")), File.ReadAllBytes(dir.File(name + ".data-00000-of-00001")));
        }
        using var reader = TensorBundleReader.Open(dir.File("async"));
        foreach (var e in reader.Entries) reader.VerifyEntry(e);
    }
}

using CheckpointGpu.Devices;
using CheckpointGpu.Format;

namespace CheckpointGpu.Pipeline.Tests;

public sealed class SavePipelineTests
{
    // 1, 17, 4095, 4097, 2^20+3, zero-size, and a tensor spanning many small slots.
    private static readonly long[] OddSizes = [1, 17, 4095, 0, 4097, (1 << 20) + 3, 65536, 12];

    public static TheoryData<AcceleratorKind, int, int, int, bool, int> RingShapes()
    {
        var data = new TheoryData<AcceleratorKind, int, int, int, bool, int>();
        foreach (var k in Backends.KindList)
        {
            data.Add(k, 4096, 2, 1, true, 1);      // ring smaller than one tensor: 2^20+3 spans 257 slots
            data.Add(k, 4096, 3, 2, false, 2);     // buffered IO, two shards
            data.Add(k, 12288, 4, 3, true, 3);     // three shards, three writers
            data.Add(k, CheckpointPipelineOptions.DefaultSlotSizeInBytes, CheckpointPipelineOptions.DefaultSlotCount, 2, true, 1);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(RingShapes))]
    public async Task SaveAsync_OddSizesAnyRingShape_BitExactAndByteIdenticalToTensorBundleWriter(
        AcceleratorKind kind, int slotSize, int slotCount, int writers, bool direct, int shards)
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(kind);
        using var model = new TestModel(acc, OddSizes, shards);
        model.SetStep(3);
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions
        { SlotSizeInBytes = slotSize, SlotCount = slotCount, WriterCount = writers, UseDirectIO = direct });
        var prefix = dir.Prefix("ckpt-3");
        var handle = pipeline.QueueSave(prefix, SavePlan.Create(model.Items(), shards));
        await handle.Completion;
        Assert.True(handle.Snapshotted.IsCompletedSuccessfully);
        model.AssertCheckpoint(prefix, 3);
        using (var r = TensorBundleReader.Open(prefix))
            foreach (var e in r.Entries) r.VerifyEntry(e);
        model.WriteReference(dir.Prefix("reference"), 3);
        Files.AssertSameBundle(dir.Prefix("reference"), prefix, shards);
        Assert.Empty(Files.Leftovers(dir.Path));
    }

    [Theory]
    [MemberData(nameof(Backends.Kinds), MemberType = typeof(Backends))]
    public async Task SaveAsync_ReusedAcrossSaves_EachCheckpointHoldsItsOwnStep(AcceleratorKind kind)
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(kind);
        using var model = new TestModel(acc, [5000, 100_000, 3], shardCount: 2);
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 8192, SlotCount = 3 });
        for (var step = 1; step <= 3; step++)
        {
            model.SetStep(step);
            await pipeline.QueueSave(dir.Prefix($"ckpt-{step}"), SavePlan.Create(model.Items(), 2)).Completion;
        }
        for (var step = 1; step <= 3; step++) model.AssertCheckpoint(dir.Prefix($"ckpt-{step}"), step);
    }

    [Fact]
    public async Task SaveAsync_EmptyPlan_WritesEmptyShardAndIndex()
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        await using var pipeline = new CheckpointPipeline(acc);
        var prefix = dir.Prefix("empty");
        await pipeline.QueueSave(prefix, SavePlan.Create([])).Completion;
        Assert.Equal(0, new FileInfo(BundleNaming.DataFile(prefix, 0, 1)).Length);
        using var r = TensorBundleReader.Open(prefix);
        Assert.Empty(r.Entries);
    }

    [Fact]
    public async Task SaveAsync_SamePrefixTwice_ReplacesTheBundle()
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, [4097, 10]);
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 4096, SlotCount = 2 });
        var prefix = dir.Prefix("weights");
        model.SetStep(1);
        await pipeline.QueueSave(prefix, SavePlan.Create(model.Items())).Completion;
        model.SetStep(2);
        await pipeline.QueueSave(prefix, SavePlan.Create(model.Items())).Completion;
        model.AssertCheckpoint(prefix, 2);
        Assert.Empty(Files.Leftovers(dir.Path));
    }

    [Fact]
    public async Task SaveAsync_QueuedSaves_CommitCallbacksRunInOrderAndStateFileNamesLast()
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, [50_000], withHostAndString: false);
        model.SetStep(0);
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 4096, SlotCount = 2 });
        var order = new List<string>();
        var plan = SavePlan.Create(model.Items());
        var handles = Enumerable.Range(1, 4).Select(i => pipeline.QueueSave(dir.Prefix($"ckpt-{i}"), plan, (p, _) =>
        {
            lock (order) order.Add(Path.GetFileName(p));
            BundleCommit.PublishLatest(p);
            return ValueTask.CompletedTask;
        })).ToArray();
        await Task.WhenAll(handles.Select(h => h.Completion));
        Assert.Equal(["ckpt-1", "ckpt-2", "ckpt-3", "ckpt-4"], order);
        Assert.Equal(Path.GetFullPath(dir.Prefix("ckpt-4")), CheckpointStateFile.LatestCheckpoint(dir.Path));
        Assert.All(handles, h => Assert.NotNull(h.Entries));
    }

    [Fact]
    public async Task SaveAsync_DeviceSourcesOfTwoAccelerators_OneCopyEnginePerAccelerator_SameBytes()
    {
        // One plan over two accelerators (TF's MultiDeviceSaver): the second accelerator's stream copies into the same ring.
        using var dir = new TempDir();
        using var a = Accelerator.Create(AcceleratorKind.Cpu);
        using var b = Accelerator.Create(AcceleratorKind.Cpu);
        var bytesA = Enumerable.Range(0, 12_000).Select(i => (byte)(i * 7)).ToArray();
        var bytesB = Enumerable.Range(0, 10_004).Select(i => (byte)(i * 13 + 1)).ToArray();
        using var bufA = a.Allocate(bytesA.Length);
        using var bufB = b.Allocate(bytesB.Length);
        a.DefaultStream.EnqueueCopyFromHost(bytesA, bufA.AsView());
        b.DefaultStream.EnqueueCopyFromHost(bytesB, bufB.AsView());
        a.DefaultStream.Synchronize();
        b.DefaultStream.Synchronize();
        await using var pipeline = new CheckpointPipeline(a, new CheckpointPipelineOptions { SlotSizeInBytes = 8192, SlotCount = 2 });
        var plan = SavePlan.Create([
            new SaveItem("x", DType.UInt8, new TensorShape(bytesA.Length), SaveSource.FromDevice(bufA.AsView())),
            new SaveItem("y", DType.UInt8, new TensorShape(bytesB.Length), SaveSource.FromDevice(bufB.AsView())),
        ]);
        await pipeline.QueueSave(dir.Prefix("two"), plan).Completion;
        using var reader = TensorBundleReader.Open(dir.Prefix("two"));
        var x = new byte[bytesA.Length];
        var y = new byte[bytesB.Length];
        reader.ReadTensor(reader.GetEntry("x"), x);   // CRC checked against TF's masked CRC32C of the bytes read
        reader.ReadTensor(reader.GetEntry("y"), y);
        Assert.Equal(bytesA, x);
        Assert.Equal(bytesB, y);
        Assert.Equal(MaskedCrc32C.ComputeMasked(bytesB), reader.GetEntry("y").Crc32C);
    }

    [Fact]
    public async Task DeleteCheckpoint_RemovesIndexAndDataOnly()
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, [10, 20], shardCount: 2);
        model.SetStep(1);
        await using var pipeline = new CheckpointPipeline(acc);
        await pipeline.QueueSave(dir.Prefix("ckpt-1"), SavePlan.Create(model.Items(), 2)).Completion;
        await pipeline.QueueSave(dir.Prefix("ckpt-10"), SavePlan.Create(model.Items(), 2)).Completion;
        BundleCommit.DeleteCheckpoint(dir.Prefix("ckpt-1"));
        Assert.Equal(["ckpt-10.data-00000-of-00002", "ckpt-10.data-00001-of-00002", "ckpt-10.index"],
            Directory.EnumerateFiles(dir.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }
}

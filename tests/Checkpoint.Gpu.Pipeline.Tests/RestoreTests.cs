using CheckpointGpu.Devices;
using CheckpointGpu.Format;

namespace CheckpointGpu.Pipeline.Tests;

public sealed class RestoreTests
{
    private static readonly long[] Sizes = [1, 17, 4095, 0, 4097, (1 << 20) + 3, 65536, 12];

    public static TheoryData<AcceleratorKind, int, int, bool> Shapes()
    {
        var data = new TheoryData<AcceleratorKind, int, int, bool>();
        foreach (var k in Backends.KindList)
        {
            data.Add(k, 4096, 2, true);
            data.Add(k, 8192, 3, false);
            data.Add(k, CheckpointPipelineOptions.DefaultSlotSizeInBytes, CheckpointPipelineOptions.DefaultSlotCount, true);
        }
        return data;
    }

    private static async Task<string> SaveReference(TempDir dir, TestModel model, int shards)
    {
        var prefix = dir.Prefix("ckpt-5");
        model.WriteReference(prefix, 5); // written by Format's writer: restore does not depend on our save path
        await Task.CompletedTask;
        return prefix;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public async Task RestoreAsync_ExistingDestinations_BitExact(AcceleratorKind kind, int slotSize, int slotCount, bool direct)
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(kind);
        using var model = new TestModel(acc, Sizes, shardCount: 2);
        var prefix = await SaveReference(dir, model, 2);
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = slotSize, SlotCount = slotCount, UseDirectIO = direct });
        await using var session = pipeline.OpenRestore(prefix);
        var targets = Enumerable.Range(0, Sizes.Length).Select(i => new RestoreTarget(TestModel.Key(i), model.Buffers[i].AsView())).Reverse().ToArray();
        await session.RestoreAsync(targets);
        for (var i = 0; i < Sizes.Length; i++) Assert.True(model.Expected(i, 5).AsSpan().SequenceEqual(Data.Download(acc, model.Buffers[i])), $"tensor {i}");
    }

    [Theory]
    [MemberData(nameof(Backends.Kinds), MemberType = typeof(Backends))]
    public async Task TryClaim_PrefetchedAndOnDemand_BitExact(AcceleratorKind kind)
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(kind);
        using var model = new TestModel(acc, Sizes, shardCount: 2);
        var prefix = await SaveReference(dir, model, 2);
        // Budget fits only part of the model: the rest is read on demand at claim time.
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 4096, SlotCount = 3, RestoreCacheBudgetInBytes = 100_000 });
        await using var session = pipeline.OpenRestore(prefix);
        await session.PrefetchAsync(Enumerable.Range(0, Sizes.Length).Select(TestModel.Key));
        Assert.InRange(session.CachedBytes, 1, 100_000);
        // "Variables are created later": fresh buffers.
        var created = Sizes.Select(n => acc.Allocate(n)).ToArray();
        var claims = new List<Task>();
        for (var i = 0; i < Sizes.Length; i++)
        {
            Assert.True(session.TryClaim(TestModel.Key(i), created[i].AsView(), out var done));
            claims.Add(done);
        }
        await Task.WhenAll(claims);
        Assert.False(session.TryClaim(TestModel.Key(0), created[0].AsView(), out _)); // at most once
        Assert.False(session.TryClaim("no/such/key", created[0].AsView(), out _));
        for (var i = 0; i < Sizes.Length; i++) Assert.True(model.Expected(i, 5).AsSpan().SequenceEqual(Data.Download(acc, created[i])), $"tensor {i}");
        Assert.Equal(0, session.CachedBytes);
        foreach (var b in created) b.Dispose();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task RestoreAsync_CorruptedData_ThrowsChecksumMismatchNamingKeyAndOffset(bool viaPrefetch)
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, [4097, 100_000, 33], withHostAndString: false);
        var prefix = await SaveReference(dir, model, 1);
        var dataPath = BundleNaming.DataFile(prefix, 0, 1);
        var bytes = File.ReadAllBytes(dataPath);
        bytes[4097 + 50_000] ^= 0x40; // inside tensor 1
        File.WriteAllBytes(dataPath, bytes);
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 8192, SlotCount = 2 });
        await using var session = pipeline.OpenRestore(prefix);
        CheckpointFormatException ex;
        if (viaPrefetch)
        {
            ex = await Assert.ThrowsAsync<CheckpointFormatException>(() => session.PrefetchAsync([TestModel.Key(1)]));
            Assert.True(session.TryClaim(TestModel.Key(1), model.Buffers[1].AsView(), out var claim));
            await Assert.ThrowsAsync<CheckpointFormatException>(() => claim);
        }
        else
        {
            ex = await Assert.ThrowsAsync<CheckpointFormatException>(() => session.RestoreAsync(
                [new RestoreTarget(TestModel.Key(0), model.Buffers[0].AsView()), new RestoreTarget(TestModel.Key(1), model.Buffers[1].AsView())]));
        }
        Assert.Equal(CheckpointFormatError.ChecksumMismatch, ex.Error);
        Assert.Equal(TestModel.Key(1), ex.Key);
        Assert.Equal(4097, ex.Offset);
        Assert.Contains("checksum mismatch", ex.Message, StringComparison.Ordinal);
        // Unaffected tensors still restore, and the pipeline still works.
        await session.RestoreAsync([new RestoreTarget(TestModel.Key(2), model.Buffers[2].AsView())]);
        Assert.True(model.Expected(2, 5).AsSpan().SequenceEqual(Data.Download(acc, model.Buffers[2])));
    }

    /// <summary>
    /// A corrupt tensor never reaches its destination, not even partly: held in its slots (fits the ring) or staged in
    /// a device scratch buffer (larger than the ring), the destination keeps its previous bytes; the tensors before it
    /// in file order land whole, with their stored values.
    /// </summary>
    [Theory]
    [InlineData(8192, 2, true)]      // 100,000 bytes span 13 windows of a 2-slot ring: device scratch
    [InlineData(65536, 4, true)]     // 2 windows: held in slots until verified
    [InlineData(65536, 4, false)]
    public async Task RestoreAsync_CorruptTensor_DestinationKeepsPreviousValue(int slotSize, int slotCount, bool direct)
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, [4097, 100_000, 33], withHostAndString: false);
        var prefix = await SaveReference(dir, model, 1);
        var dataPath = BundleNaming.DataFile(prefix, 0, 1);
        var bytes = File.ReadAllBytes(dataPath);
        bytes[4097 + 99_990] ^= 0x01; // the last window of tensor 1: every earlier piece already passed the consumer
        File.WriteAllBytes(dataPath, bytes);
        var previous = Enumerable.Range(0, 100_000).Select(i => (byte)(i * 7 + 3)).ToArray();
        Data.Upload(acc, model.Buffers[1], previous);
        Data.Upload(acc, model.Buffers[0], new byte[4097]);
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = slotSize, SlotCount = slotCount, UseDirectIO = direct });
        await using var session = pipeline.OpenRestore(prefix);
        var ex = await Assert.ThrowsAsync<CheckpointFormatException>(() => session.RestoreAsync(
            [new RestoreTarget(TestModel.Key(0), model.Buffers[0].AsView()), new RestoreTarget(TestModel.Key(1), model.Buffers[1].AsView())]));
        Assert.Equal(CheckpointFormatError.ChecksumMismatch, ex.Error);
        Assert.Equal(TestModel.Key(1), ex.Key);
        Assert.Equal(4097, ex.Offset);
        Assert.Equal(previous, Data.Download(acc, model.Buffers[1]));
        Assert.Equal(model.Expected(0, 5), Data.Download(acc, model.Buffers[0]));
    }

    /// <summary>
    /// On the host-memory accelerators (native CPU, ILGPU's CPU) tensors larger than half the ring are read straight into
    /// the scratch buffer, whatever their offset in the file or the scratch's alignment; three such tensors in a row share
    /// it (each one's reads wait for the previous one's copy out), and the second one, corrupt, fails the call: the first
    /// lands whole, the second and third keep their previous bytes.
    /// </summary>
    [Theory]
    [InlineData(AcceleratorKind.Cpu)]
    [InlineData(AcceleratorKind.IlgpuCpu)]
    public async Task RestoreAsync_HostMemoryScratch_ReadDirectly_CorruptOneKeepsPreviousValues(AcceleratorKind kind)
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(kind);
        long[] sizes = [4097, 100_003, 99_999, 65_541];
        using var model = new TestModel(acc, sizes, withHostAndString: false);
        var prefix = await SaveReference(dir, model, 1);
        var options = new CheckpointPipelineOptions { SlotSizeInBytes = 8192, SlotCount = 4 };
        var before = Interlocked.Read(ref RestoreSession.BytesReadIntoScratch);
        await using (var pipeline = new CheckpointPipeline(acc, options))
        await using (var session = pipeline.OpenRestore(prefix))
            await session.RestoreAsync(Enumerable.Range(0, sizes.Length).Select(i => new RestoreTarget(TestModel.Key(i), model.Buffers[i].AsView())).ToArray());
        for (var i = 0; i < sizes.Length; i++) Assert.True(model.Expected(i, 5).AsSpan().SequenceEqual(Data.Download(acc, model.Buffers[i])), $"tensor {i}");
        // Tensors 1-3 (13 windows each of a 4-slot ring) went straight into the scratch (other tests may add to the count).
        Assert.True(Interlocked.Read(ref RestoreSession.BytesReadIntoScratch) - before >= sizes[1] + sizes[2] + sizes[3], "not read into the scratch");

        var entry = TestModel.Key(2);
        var dataPath = BundleNaming.DataFile(prefix, 0, 1);
        var bytes = File.ReadAllBytes(dataPath);
        bytes[4097 + 100_003 + 50_000] ^= 0x40;
        File.WriteAllBytes(dataPath, bytes);
        byte[][] previous = [.. sizes.Select((n, i) => Enumerable.Range(0, (int)n).Select(j => (byte)(j * 13 + i)).ToArray())];
        for (var i = 0; i < sizes.Length; i++) Data.Upload(acc, model.Buffers[i], previous[i]);
        await using (var pipeline = new CheckpointPipeline(acc, options))
        await using (var session = pipeline.OpenRestore(prefix))
        {
            var ex = await Assert.ThrowsAsync<CheckpointFormatException>(() => session.RestoreAsync(
                Enumerable.Range(0, sizes.Length).Select(i => new RestoreTarget(TestModel.Key(i), model.Buffers[i].AsView())).ToArray()));
            Assert.Equal(CheckpointFormatError.ChecksumMismatch, ex.Error);
            Assert.Equal(entry, ex.Key);
        }
        Assert.True(model.Expected(1, 5).AsSpan().SequenceEqual(Data.Download(acc, model.Buffers[1])), "tensor 1 (before the corrupt one) lands whole");
        Assert.Equal(previous[2], Data.Download(acc, model.Buffers[2]));
        Assert.Equal(previous[3], Data.Download(acc, model.Buffers[3]));
    }

    /// <summary>
    /// A restore's host-memory scratch is kept for the next restore through the same pipeline (warm memory: fresh memory
    /// is slow to touch), the next restore reads through the same buffer and lands TF-format values bit for bit, a failed
    /// restore does not keep it, and the next save hands it back; with <c>RetainRestoreScratch = false</c> none is kept.
    /// </summary>
    [Theory]
    [InlineData(AcceleratorKind.Cpu, true)]
    [InlineData(AcceleratorKind.IlgpuCpu, true)]
    [InlineData(AcceleratorKind.OpenCL, true)]   // PoCL: device memory is host memory, not addressable as such
    [InlineData(AcceleratorKind.Cpu, false)]
    public async Task RestoreAsync_HostScratch_KeptForTheNextRestore_UntilASave(AcceleratorKind kind, bool retain)
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(kind);
        long[] sizes = [4097, 100_003, 65_541];
        using var model = new TestModel(acc, sizes, withHostAndString: false);
        var prefix = await SaveReference(dir, model, 1);
        var targets = Enumerable.Range(0, sizes.Length).Select(i => new RestoreTarget(TestModel.Key(i), model.Buffers[i].AsView())).ToArray();
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 8192, SlotCount = 4, RetainRestoreScratch = retain });
        Assert.Equal(0, pipeline.RetainedRestoreScratchInBytes);
        await using (var session = pipeline.OpenRestore(prefix)) await session.RestoreAsync(targets);
        if (!retain)
        {
            Assert.Equal(0, pipeline.RetainedRestoreScratchInBytes);
            return;
        }
        var kept = pipeline.RetainedScratch;
        Assert.NotNull(kept);
        Assert.True(pipeline.RetainedRestoreScratchInBytes >= sizes[1], "kept scratch smaller than the largest scratch tensor");

        // The next restore overwrites other values through the same (kept) buffer.
        for (var i = 0; i < sizes.Length; i++) Data.Upload(acc, model.Buffers[i], new byte[sizes[i]]);
        var before = Interlocked.Read(ref RestoreSession.BytesReadIntoScratch);
        await using (var session = pipeline.OpenRestore(prefix)) await session.RestoreAsync(targets);
        for (var i = 0; i < sizes.Length; i++) Assert.True(model.Expected(i, 5).AsSpan().SequenceEqual(Data.Download(acc, model.Buffers[i])), $"tensor {i}");
        // Read straight into the kept scratch where it is addressable host memory (OpenCL: through slots, then copied in).
        if (kind != AcceleratorKind.OpenCL)
            Assert.True(Interlocked.Read(ref RestoreSession.BytesReadIntoScratch) - before >= sizes[1] + sizes[2], "not read into the scratch");
        Assert.Same(kept, pipeline.RetainedScratch);
        Assert.False(kept!.IsDisposed);

        // A failed restore frees it.
        var dataPath = BundleNaming.DataFile(prefix, 0, 1);
        var bytes = File.ReadAllBytes(dataPath);
        bytes[4097 + 50_000] ^= 0x10;
        File.WriteAllBytes(dataPath, bytes);
        await using (var session = pipeline.OpenRestore(prefix))
            await Assert.ThrowsAsync<CheckpointFormatException>(() => session.RestoreAsync(targets));
        Assert.Equal(0, pipeline.RetainedRestoreScratchInBytes);
        Assert.True(kept.IsDisposed);

        // A save hands a kept scratch back.
        bytes[4097 + 50_000] ^= 0x10;
        File.WriteAllBytes(dataPath, bytes);
        await using (var session = pipeline.OpenRestore(prefix)) await session.RestoreAsync(targets);
        var second = pipeline.RetainedScratch;
        Assert.NotNull(second);
        await pipeline.QueueSave(dir.Prefix("after"), SavePlan.Create(model.Items())).Completion;
        Assert.Equal(0, pipeline.RetainedRestoreScratchInBytes);
        Assert.True(second!.IsDisposed);
    }

    /// <summary>
    /// New destinations (restore-on-create) take their bytes as they stream, whatever the tensor's size (fits the ring or
    /// not), next to existing destinations that keep the verify-before-device path: every value lands bit for bit.
    /// </summary>
    [Theory]
    [MemberData(nameof(Shapes))]
    public async Task RestoreAsync_NewAndExistingDestinations_BitExact(AcceleratorKind kind, int slotSize, int slotCount, bool direct)
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(kind);
        using var model = new TestModel(acc, Sizes, shardCount: 2);
        var prefix = await SaveReference(dir, model, 2);
        var created = Sizes.Select(n => acc.Allocate(n)).ToArray();
        try
        {
            await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = slotSize, SlotCount = slotCount, UseDirectIO = direct });
            await using var session = pipeline.OpenRestore(prefix);
            // Odd tensors into new buffers, even ones into the model's (existing) buffers.
            var targets = Enumerable.Range(0, Sizes.Length)
                .Select(i => i % 2 == 1 ? new RestoreTarget(TestModel.Key(i), created[i].AsView(), DestinationIsNew: true) : new RestoreTarget(TestModel.Key(i), model.Buffers[i].AsView()))
                .ToArray();
            await session.RestoreAsync(targets);
            for (var i = 0; i < Sizes.Length; i++)
                Assert.True(model.Expected(i, 5).AsSpan().SequenceEqual(Data.Download(acc, i % 2 == 1 ? created[i] : model.Buffers[i])), $"tensor {i}");
        }
        finally
        {
            foreach (var b in created) b.Dispose();
        }
    }

    /// <summary>
    /// A corrupt tensor streamed into a new destination (which the caller then discards) fails the call with the
    /// checksum mismatch naming key and offset, whether it fits the ring or not; an existing destination later in file
    /// order keeps its previous bytes, one earlier lands whole.
    /// </summary>
    [Theory]
    [InlineData(8192, 2)]        // 100,000 bytes: larger than the ring
    [InlineData(65536, 4)]       // 2 windows: would fit the ring's hold limit
    public async Task RestoreAsync_NewDestination_CorruptTensor_Fails_ExistingOnesKeepTheirValues(int slotSize, int slotCount)
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, [4097, 100_000, 33], withHostAndString: false);
        var prefix = await SaveReference(dir, model, 1);
        var dataPath = BundleNaming.DataFile(prefix, 0, 1);
        var bytes = File.ReadAllBytes(dataPath);
        bytes[4097 + 99_990] ^= 0x01; // the last window of tensor 1
        File.WriteAllBytes(dataPath, bytes);
        Data.Upload(acc, model.Buffers[0], new byte[4097]);
        var previous2 = Enumerable.Range(0, 33).Select(i => (byte)(i + 100)).ToArray();
        Data.Upload(acc, model.Buffers[2], previous2);
        using var fresh = acc.Allocate(100_000);
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = slotSize, SlotCount = slotCount });
        await using var session = pipeline.OpenRestore(prefix);
        var ex = await Assert.ThrowsAsync<CheckpointFormatException>(() => session.RestoreAsync(
        [
            new RestoreTarget(TestModel.Key(0), model.Buffers[0].AsView()),
            new RestoreTarget(TestModel.Key(1), fresh.AsView(), DestinationIsNew: true),
            new RestoreTarget(TestModel.Key(2), model.Buffers[2].AsView()),
        ]));
        Assert.Equal(CheckpointFormatError.ChecksumMismatch, ex.Error);
        Assert.Equal(TestModel.Key(1), ex.Key);
        Assert.Equal(4097, ex.Offset);
        Assert.Equal(model.Expected(0, 5), Data.Download(acc, model.Buffers[0]));
        Assert.Equal(previous2, Data.Download(acc, model.Buffers[2]));
    }

    /// <summary>A destination on another accelerator than the ring's is filled through its own stream.</summary>
    [Fact]
    public async Task RestoreAsync_DestinationOnAnotherAccelerator_BitExact()
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var other = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, Sizes, withHostAndString: false);
        var prefix = await SaveReference(dir, model, 1);
        var elsewhere = Sizes.Select(n => other.Allocate(n)).ToArray();
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 8192, SlotCount = 3 });
        await using (var session = pipeline.OpenRestore(prefix))
            await session.RestoreAsync(Enumerable.Range(0, Sizes.Length).Select(i => new RestoreTarget(TestModel.Key(i), elsewhere[i].AsView(), other.DefaultStream)).ToArray());
        for (var i = 0; i < Sizes.Length; i++) Assert.True(model.Expected(i, 5).AsSpan().SequenceEqual(Data.Download(other, elsewhere[i])), $"tensor {i}");
        foreach (var b in elsewhere) b.Dispose();
    }

    [Fact]
    public async Task RestoreAsync_TruncatedDataFile_ThrowsTruncatedData()
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, [4097, 100_000], withHostAndString: false);
        var prefix = await SaveReference(dir, model, 1);
        using (var f = File.OpenWrite(BundleNaming.DataFile(prefix, 0, 1))) f.SetLength(50_000);
        await using var pipeline = new CheckpointPipeline(acc);
        await using var session = pipeline.OpenRestore(prefix);
        var ex = await Assert.ThrowsAsync<CheckpointFormatException>(() => session.RestoreAsync([new RestoreTarget(TestModel.Key(1), model.Buffers[1].AsView())]));
        Assert.Equal(CheckpointFormatError.TruncatedData, ex.Error);
        Assert.Equal(TestModel.Key(1), ex.Key);
    }

    [Fact]
    public async Task RestoreAsync_WrongDestinationLength_ThrowsArgumentException()
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, [16], withHostAndString: false);
        var prefix = await SaveReference(dir, model, 1);
        using var wrong = acc.Allocate(8);
        await using var pipeline = new CheckpointPipeline(acc);
        await using var session = pipeline.OpenRestore(prefix);
        Assert.Throws<ArgumentException>(() => { _ = session.RestoreAsync([new RestoreTarget(TestModel.Key(0), wrong.AsView())]); });
    }

    /// <summary>A key the index does not hold: a typed format error naming the index file and the key, before any read.</summary>
    [Fact]
    public async Task RestoreAsync_KeyNotInCheckpoint_ThrowsKeyNotFoundFormatErrorNamingIndexAndKey()
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, [16], withHostAndString: false);
        var prefix = await SaveReference(dir, model, 1);
        using var buffer = acc.Allocate(16);
        await using var pipeline = new CheckpointPipeline(acc);
        await using var session = pipeline.OpenRestore(prefix);
        var ex = Assert.Throws<CheckpointFormatException>(() => { _ = session.RestoreAsync([new RestoreTarget("missing/.ATTRIBUTES/VARIABLE_VALUE", buffer.AsView())]); });
        Assert.Equal(CheckpointFormatError.KeyNotFound, ex.Error);
        Assert.Equal("missing/.ATTRIBUTES/VARIABLE_VALUE", ex.Key);
        Assert.Equal(BundleNaming.IndexFile(prefix), ex.FilePath);
        Assert.False(ex.IsUnsupportedInput);
        Assert.StartsWith(Path.GetFileName(prefix) + ".index: ", ex.Message, StringComparison.Ordinal);
        Assert.Contains("'missing/.ATTRIBUTES/VARIABLE_VALUE'", ex.Message, StringComparison.Ordinal);
        // A present key in the same call does not change that; the session still restores afterwards.
        Assert.Throws<CheckpointFormatException>(() => { _ = session.RestoreAsync([new RestoreTarget(TestModel.Key(0), buffer.AsView()), new RestoreTarget("missing", buffer.AsView())]); });
        await session.RestoreAsync([new RestoreTarget(TestModel.Key(0), buffer.AsView())]);
        var restored = new byte[16];
        acc.DefaultStream.EnqueueCopyToHost(buffer.AsView(), restored);
        acc.DefaultStream.Synchronize();
        using var reader = TensorBundleReader.Open(prefix);
        Assert.Equal(reader.GetEntry(TestModel.Key(0)).Crc32C, MaskedCrc32C.ComputeMasked(restored));
    }

    [Theory]
    [MemberData(nameof(Backends.Kinds), MemberType = typeof(Backends))]
    public async Task SaveThenRestore_ThroughThePipeline_RoundTrips(AcceleratorKind kind)
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(kind);
        using var model = new TestModel(acc, Sizes, shardCount: 3);
        model.SetStep(9);
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 8192, SlotCount = 4 });
        await pipeline.QueueSave(dir.Prefix("ckpt-9"), SavePlan.Create(model.Items(), 3)).Completion;
        var fresh = Sizes.Select(n => acc.Allocate(n)).ToArray();
        await using (var session = pipeline.OpenRestore(dir.Prefix("ckpt-9")))
            await session.RestoreAsync(Enumerable.Range(0, Sizes.Length).Select(i => new RestoreTarget(TestModel.Key(i), fresh[i].AsView())).ToArray());
        for (var i = 0; i < Sizes.Length; i++) Assert.True(model.Expected(i, 9).AsSpan().SequenceEqual(Data.Download(acc, fresh[i])));
        foreach (var b in fresh) b.Dispose();
    }
}

using System.Runtime.InteropServices;
using CheckpointGpu.Devices;
using CheckpointGpu.Devices.Ilgpu;
using CheckpointGpu.Format;
using CheckpointGpu.TestSupport;
using ILGPU;
using ILGPU.Runtime;
using Accelerator = CheckpointGpu.Devices.Accelerator;
using ILGPU.Runtime.CPU;
using Xunit.Abstractions;

namespace CheckpointGpu.Tests;

/// <summary>
/// The engine on ILGPU accelerators: bring-your-own ILGPU buffers (the README example, run as written), their
/// mismatch errors, and every object-based corpus checkpoint restored on create on ILGPU-CPU, checked against TF's
/// CRCs from device memory and written again (sync and through the pipeline) byte-identically.
/// </summary>
public sealed class IlgpuTests(ITestOutputHelper output)
{
    public static TheoryData<string> ObjectBasedPrefixes() => GenericTreeTests.ObjectBasedPrefixes();

    [Fact]
    public void ReadmeExample_BringYourOwnIlgpu_SavesAndRestoresOnCreateIntoTheCallersBuffers()
    {
        using var dir = new TempDir("ilgpu-readme");
        var path = dir.File("ckpt");
        var weights = Enumerable.Range(0, 64 * 10).Select(i => MathF.Sin(i)).ToArray();
        var step = new[] { 1234L };

        // ---- README "Bring your own ILGPU" (kept verbatim) ----
        using var context = Context.Create(b => b.DefaultCPU());          // the training loop's own ILGPU setup
        using var ilgpu = context.GetCPUDevice(0).CreateAccelerator(context);
        using var w = ilgpu.Allocate1D(weights);                           // its own buffers
        using var s = ilgpu.Allocate1D(step);

        using var device = IlgpuAccelerator.FromExisting(ilgpu);           // ownership stays with the caller
        var model = new AutoTrackable();
        Variable.FromIlgpu(model, "w", device, w, new TensorShape(64, 10));     // float32 [64, 10], no copy
        Variable.FromIlgpu(model, "step", device, s, TensorShape.Scalar);       // int64 []
        string saved;
        using (var checkpoint = new Checkpoint(("model", model)))
            saved = checkpoint.Save(path);                                     // path-1: TF's files

        // A restart: restore first, then the buffers the caller's factory allocates receive the values on creation.
        var restored = new AutoTrackable();
        using var checkpoint2 = new Checkpoint(("model", restored));
        var status = checkpoint2.Restore(saved);
        using var w2 = ilgpu.Allocate1D<float>(64 * 10);
        using var s2 = ilgpu.Allocate1D<long>(1);
        Variable.FromIlgpu(restored, "w", device, w2, new TensorShape(64, 10));
        Variable.FromIlgpu(restored, "step", device, s2, TensorShape.Scalar);
        status.AssertConsumed();
        // ---- end of README example ----

        Assert.Equal(weights, w2.GetAsArray1D());
        Assert.Equal(step, s2.GetAsArray1D());
        // The file is TF's format: the stored CRC matches the caller's bytes.
        using var reader = TensorBundleReader.Open(saved);
        Assert.Equal(MaskedCrc32C.ComputeMasked(MemoryMarshal.AsBytes(weights.AsSpan())), reader.GetEntry("model/w/.ATTRIBUTES/VARIABLE_VALUE").Crc32C);
        Assert.False(w.IsDisposed);
    }

    [Theory]
    [InlineData("int")]
    [InlineData("length")]
    public void FromIlgpu_BufferDisagreesWithCheckpoint_ThrowsMismatchNamingPathAndKeyBeforeCopying(string what)
    {
        using var dir = new TempDir("ilgpu-mismatch");
        using var device = (IlgpuAccelerator)Accelerator.Create(AcceleratorKind.IlgpuCpu);
        var model = new AutoTrackable();
        var dense = model.Track("dense", new AutoTrackable());
        using (var v = Variable.Create(dense, "kernel", device, DType.Float, new TensorShape(4, 3), VariableInitializer.Constant(1f)))
        using (var checkpoint = new Checkpoint(("model", model)))
            checkpoint.Write(dir.File("ckpt"));

        var restored = new AutoTrackable();
        var restoredDense = restored.Track("dense", new AutoTrackable());
        using var checkpoint2 = new Checkpoint(("model", restored));
        checkpoint2.Restore(dir.File("ckpt"));
        CheckpointMismatchException ex;
        if (what == "int")
        {
            using var wrongType = device.Device.Allocate1D(Enumerable.Repeat(-5, 12).ToArray());
            ex = Assert.Throws<CheckpointMismatchException>(() => Variable.FromIlgpu(restoredDense, "kernel", device, wrongType, new TensorShape(4, 3)));
            Assert.All(wrongType.GetAsArray1D(), x => Assert.Equal(-5, x));       // nothing copied
            Assert.Contains("int32", ex.Message);
        }
        else
        {
            using var wrongLength = device.Device.Allocate1D(Enumerable.Repeat(-5f, 13).ToArray());
            ex = Assert.Throws<CheckpointMismatchException>(() => Variable.FromIlgpu(restoredDense, "kernel", device, wrongLength, new TensorShape(13)));
            Assert.All(wrongLength.GetAsArray1D(), x => Assert.Equal(-5f, x));
            Assert.Contains("13 elements", ex.Message);
        }
        output.WriteLine(ex.Message);
        Assert.Equal("(root).model.dense.kernel", ex.ObjectPath);
        Assert.Equal("model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE", ex.Key);
        Assert.Null(restoredDense.LookupDependency("kernel"));
    }

    [Fact]
    public void FromIlgpu_LengthDisagreesWithShape_ThrowsArgumentException_AndDisposeLeavesTheBufferToTheCaller()
    {
        using var device = (IlgpuAccelerator)Accelerator.Create(AcceleratorKind.IlgpuCpu);
        using var buffer = device.Device.Allocate1D<double>(6);
        Assert.Throws<ArgumentException>(() => Variable.FromIlgpu(device, buffer, "x", new TensorShape(7)));
        var v = Variable.FromIlgpu(device, buffer, "x", new TensorShape(2, 3));
        Assert.Equal(DType.Double, v.DType);
        v.Assign<double>([1, 2, 3, 4, 5, 6]);
        v.Dispose();
        Assert.False(buffer.IsDisposed);
        Assert.Equal(new double[] { 1, 2, 3, 4, 5, 6 }, buffer.GetAsArray1D());
    }

    [CorpusTheory]
    [MemberData(nameof(ObjectBasedPrefixes))]
    public async Task Corpus_RestoreOnCreateOnIlgpuCpu_TfCrcsFromDevice_RewritesByteIdentical(string relativePrefix)
    {
        var tf = Path.Combine(TfCorpus.RequireRoot(), relativePrefix);
        await using var device = Accelerator.Create(AcceleratorKind.IlgpuCpu);
        using var reader = TensorBundleReader.Open(tf);
        await using var mirror = LoadedCheckpoint.Restore(tf, device, log: null);
        mirror.Status.AssertConsumed().AssertExistingObjectsMatched();
        foreach (var (key, v) in mirror.Variables)
        {
            Assert.Same(device, v.Accelerator);
            Assert.Equal(reader.GetEntry(key).Crc32C, MaskedCrc32C.ComputeMasked(v.ReadBytes()));
        }

        using var dir = new TempDir("ilgpu-mirror");
        var written = mirror.Write(dir.File("sync"));
        var handle = await mirror.WriteAsync(dir.File("async"));
        await handle.Completion;
        foreach (var copy in new[] { written, handle.Prefix })
        {
            TestUtil.AssertFilesEqual(tf + ".index", copy + ".index");
            for (var i = 0; i < reader.Header.ShardCount; i++)
                TestUtil.AssertFilesEqual(BundleNaming.DataFile(tf, i, reader.Header.ShardCount), BundleNaming.DataFile(copy, i, reader.Header.ShardCount));
        }
    }

    [Fact]
    public async Task SaveAsync_OnIlgpuCpu_SnapshotIsTheStateAtTheCall_RestoreAsyncBringsItBack()
    {
        using var dir = new TempDir("ilgpu-async");
        await using var device = Accelerator.Create(AcceleratorKind.IlgpuCpu);
        var root = new AutoTrackable();
        var values = Enumerable.Range(0, 3 * 1024 * 1024 + 7).Select(i => (float)Math.Cos(i)).ToArray();   // spans ring slots
        using var big = Variable.Create(root, "big", device, DType.Float, new TensorShape(values.Length), VariableInitializer.FromValues<float>(values));
        await using (var checkpoint = new Checkpoint(("model", root)))
        {
            var handle = await checkpoint.SaveAsync(dir.File("ckpt"));
            await handle.Snapshotted;
            big.Assign<float>(new float[values.Length]);     // after the snapshot: must not reach the file
            await handle.Completion;
        }

        var restored = new AutoTrackable();
        await using var checkpoint2 = new Checkpoint(("model", restored));
        var status = await checkpoint2.RestoreAsync(dir.File("ckpt-1"));
        using var back = Variable.Create(restored, "big", device, DType.Float, new TensorShape(values.Length));
        status.AssertConsumed();
        Assert.Equal(values, back.Read<float>());
    }
}

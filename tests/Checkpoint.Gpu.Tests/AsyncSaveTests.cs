using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Tests;

/// <summary>
/// Saves through the IO pipeline (SaveAsync/WriteAsync): the bytes must be TensorFlow's, the snapshot must be the state at
/// the call, and CheckpointManager's bookkeeping must follow durability.
/// </summary>
public sealed class AsyncSaveTests(CpuFixture cpu) : IClassFixture<CpuFixture>
{
    public static TheoryData<string> ObjectBasedPrefixes() => GenericTreeTests.ObjectBasedPrefixes();

    [CorpusTheory]
    [MemberData(nameof(ObjectBasedPrefixes))]
    public async Task WriteAsync_MirroredTfCheckpoint_IsByteIdenticalToTensorFlowsFiles(string relativePrefix)
    {
        var tf = Path.Combine(TfCorpus.RequireRoot(), relativePrefix);
        await using var mirror = LoadedCheckpoint.Restore(tf, cpu.Accelerator, log: null);
        using var dir = new TempDir("async-mirror");
        var handle = await mirror.WriteAsync(dir.File("copy"));
        await handle.Completion;
        AssertSameBundle(tf, handle.Prefix);
    }

    [OpenClCorpusFact]
    public async Task WriteAsync_OnOpenCl_IsByteIdenticalToTensorFlowsFiles()
    {
        var tf = Path.Combine(TfCorpus.RequireRoot(), "obj-keras3-tf219-manager-3ckpts", "ckpt-9");
        using var acc = Accelerator.Create(AcceleratorKind.OpenCL);
        await using var mirror = LoadedCheckpoint.Restore(tf, acc, log: null);
        using var dir = new TempDir("async-mirror-cl");
        var handle = await mirror.WriteAsync(dir.File("copy"));
        await handle.Completion;
        AssertSameBundle(tf, handle.Prefix);
    }

    [Fact]
    public async Task SaveAsync_DefaultPipeline_StreamsModelVariablesFromTheirDevice_NotFromTheCountersAccelerator()
    {
        // Regression: the saver's own pipeline went on the accelerator of the first saved variable in node order — the save
        // counter's small CPU accelerator — so every model variable was read into host memory while the save was planned.
        using var dir = new TempDir("async-default-pipeline");
        var root = new AutoTrackable();
        using var v = Variable.Create(root, "v", cpu.Accelerator, DType.Float, new TensorShape(1 << 16), VariableInitializer.Constant(2f));
        await using var checkpoint = new Checkpoint(("model", root));
        var handle = await checkpoint.SaveAsync(dir.File("ckpt"));
        await handle.Completion;
        var planned = handle.Plan.Tensors.Single(t => t.Key == "model/v/.ATTRIBUTES/VARIABLE_VALUE");
        Assert.Equal(SaveSourceKind.Device, planned.Item.Source.Kind);
        Assert.Same(cpu.Accelerator, planned.Item.Source.Device.Buffer!.Accelerator);
        // The counter, on its own accelerator, is snapshotted while planning by a device-side clone (never a host read)
        // and streamed by that accelerator's copy engine.
        var counter = handle.Plan.Tensors.Single(t => t.Key == "save_counter/.ATTRIBUTES/VARIABLE_VALUE");
        Assert.Equal(SaveSourceKind.Device, counter.Item.Source.Kind);
        Assert.NotSame(cpu.Accelerator, counter.Item.Source.Device.Buffer!.Accelerator);
    }

    [Fact]
    public async Task SaveAsync_MutateAfterSnapshotted_CheckpointHoldsValuesAtTheCall()
    {
        using var dir = new TempDir("async-snapshot");
        var root = new AutoTrackable();
        using var v = Variable.Create(root, "v", cpu.Accelerator, DType.Float, new TensorShape(1000), VariableInitializer.Constant(1.5f));
        await using var checkpoint = new Checkpoint(("model", root));
        var handle = await checkpoint.SaveAsync(dir.File("ckpt"));
        await handle.Snapshotted;
        v.Assign<float>(Enumerable.Repeat(-7f, 1000).ToArray());   // allowed now: the save no longer reads the buffer
        await handle.Completion;

        Assert.EndsWith("ckpt-1", handle.Prefix);
        using var reader = TensorBundleReader.Open(handle.Prefix);
        var stored = new byte[4000];
        reader.ReadTensor(reader.GetEntry("model/v/.ATTRIBUTES/VARIABLE_VALUE"), stored);
        Assert.All(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(stored).ToArray(), x => Assert.Equal(1.5f, x));
        var counter = new byte[8];
        reader.ReadTensor(reader.GetEntry("save_counter/.ATTRIBUTES/VARIABLE_VALUE"), counter);
        Assert.Equal(1L, BitConverter.ToInt64(counter));
        // Checkpoint.SaveAsync rewrites the state file after the checkpoint is durable.
        Assert.Equal(handle.Prefix, CheckpointStateFile.LatestCheckpoint(dir.Path));
    }

    [Fact]
    public async Task SaveAsync_SameStateAsSyncSave_WritesTheSameBytes()
    {
        using var dir = new TempDir("async-vs-sync");
        var root = new AutoTrackable();
        var values = Enumerable.Range(0, 3 * 1024 * 1024 + 7).Select(i => (float)Math.Sin(i)).ToArray();   // ~12 MiB: spans ring slots
        using var big = Variable.Create(root, "big", cpu.Accelerator, DType.Float, new TensorShape(values.Length), VariableInitializer.FromValues<float>(values));
        using var small = Variable.Create(root, "small", cpu.Accelerator, DType.Int32, new TensorShape(3), VariableInitializer.FromValues<int>([1, 2, 3]));
        await using var checkpoint = new Checkpoint(("model", root));
        var sync = checkpoint.Write(dir.File("sync"));
        var handle = await checkpoint.WriteAsync(dir.File("async"));
        await handle.Completion;
        AssertSameBundle(sync, handle.Prefix);
    }

    [Fact]
    public async Task ManagerSaveAsync_MaxToKeepTwo_KeepsTheLastTwoAndRecordsThemAfterCompletion()
    {
        using var dir = new TempDir("async-manager");
        var root = new AutoTrackable();
        using var v = Variable.Create(root, "v", cpu.Accelerator, DType.Float, new TensorShape(16), VariableInitializer.Zeros);
        await using var checkpoint = new Checkpoint(("model", root));
        var manager = new CheckpointManager(checkpoint, dir.Path, maxToKeep: 2);
        var prefixes = new List<string>();
        for (var i = 1; i <= 4; i++)
        {
            v.Assign<float>(Enumerable.Repeat((float)i, 16).ToArray());
            var handle = (await manager.SaveAsync())!;
            await handle.Completion;
            prefixes.Add(handle.Prefix);
        }
        Assert.Equal(prefixes.Select(p => Path.Combine(dir.Path, Path.GetFileName(p))), prefixes);
        Assert.False(File.Exists(prefixes[0] + ".index"));
        Assert.False(File.Exists(prefixes[1] + ".index"));
        Assert.True(File.Exists(prefixes[2] + ".index"));
        Assert.True(File.Exists(prefixes[3] + ".index"));
        var state = CheckpointStateFile.Read(dir.Path)!;
        Assert.Equal(["ckpt-3", "ckpt-4"], state.AllModelCheckpointPaths);
        Assert.Equal("ckpt-4", state.ModelCheckpointPath);
        Assert.Equal(prefixes[3], manager.LatestCheckpoint);
        // A new manager (a restart) sees the same two.
        var again = new CheckpointManager(checkpoint, dir.Path, maxToKeep: 2);
        Assert.Equal(prefixes.Skip(2), again.Checkpoints);
    }

    [Fact]
    public async Task SaveAsync_PreviousCallNotAwaited_IsRefusedWithoutSideEffects()
    {
        using var dir = new TempDir("async-overlap");
        var root = new AutoTrackable();
        using var v = Variable.Create(root, "v", cpu.Accelerator, DType.Float, new TensorShape(4), VariableInitializer.Zeros);
        await using var checkpoint = new Checkpoint(("model", root));
        var saver = (TrackableSaver)typeof(Checkpoint).GetField("_saver", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(checkpoint)!;
        var gate = new QueueGate();
        saver.QueueObserver = gate.WaitAsync;
        var first = checkpoint.SaveAsync(dir.File("ckpt"));
        Assert.False(first.IsCompleted);
        Assert.Throws<InvalidOperationException>(() => { _ = checkpoint.SaveAsync(dir.File("ckpt")); });
        Assert.Equal(1L, checkpoint.SaveCounter.Read<long>()[0]);   // the refused call did not bump the save counter
        gate.Open();
        var handle = await first;
        await handle.Completion;
        Assert.EndsWith("ckpt-1", handle.Prefix);
        saver.QueueObserver = null;
        var next = await checkpoint.SaveAsync(dir.File("ckpt"));      // once awaited, the next call is accepted
        await next.Completion;
        Assert.EndsWith("ckpt-2", next.Prefix);
    }

    private static void AssertSameBundle(string expectedPrefix, string actualPrefix)
    {
        using var expected = TensorBundleReader.Open(expectedPrefix);
        Assert.Equal(File.ReadAllBytes(expectedPrefix + ".index"), File.ReadAllBytes(actualPrefix + ".index"));
        for (var i = 0; i < expected.Header.ShardCount; i++)
            Assert.Equal(File.ReadAllBytes(BundleNaming.DataFile(expectedPrefix, i, expected.Header.ShardCount)),
                File.ReadAllBytes(BundleNaming.DataFile(actualPrefix, i, expected.Header.ShardCount)));
    }
}

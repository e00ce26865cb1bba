using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Tests;

/// <summary>Hand-built C# trees mirroring TF-written corpus checkpoints: restore, restore-on-create, byte-identical re-save.</summary>
public sealed class CorpusInteropTests : IClassFixture<CpuFixture>
{
    private static readonly string[] Keras3LayerNames = ["dense_18", "dense_19", "dense_20"];
    private readonly Accelerator _cpu;

    public CorpusInteropTests(CpuFixture fixture) { _cpu = fixture.Accelerator; }

    private static string Keras3(string ckpt) => TestUtil.Prefix(TestUtil.Keras3Case, ckpt);

    private static (Checkpoint Ckpt, Keras3Model Model, Keras3Adam Adam) BuildKeras3(Accelerator acc, bool build)
    {
        var model = new Keras3Model(acc, build);
        var adam = new Keras3Adam(acc);
        if (build) adam.Build(model.TrainableVariables, Keras3LayerNames);
        var ckpt = new Checkpoint(("compensator_optimizer", adam), ("compensator", model)) { Log = null };
        return (ckpt, model, adam);
    }

    private static void AssertKeras3Values(string prefix, Keras3Model model, Keras3Adam adam)
    {
        TestUtil.AssertMatchesTf(prefix, "compensator/fc1/_kernel/.ATTRIBUTES/VARIABLE_VALUE", model.Fc1.Kernel!);
        TestUtil.AssertMatchesTf(prefix, "compensator/fc2/bias/.ATTRIBUTES/VARIABLE_VALUE", model.Fc2.Bias!);
        TestUtil.AssertMatchesTf(prefix, "compensator/q/_kernel/.ATTRIBUTES/VARIABLE_VALUE", model.Q.Kernel!);
        TestUtil.AssertMatchesTf(prefix, "compensator_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE", adam.Iterations);
        TestUtil.AssertMatchesTf(prefix, "compensator_optimizer/_learning_rate/.ATTRIBUTES/VARIABLE_VALUE", adam.LearningRate);
        for (var i = 2; i < 14; i++)
            TestUtil.AssertMatchesTf(prefix, $"compensator_optimizer/_variables/{i}/.ATTRIBUTES/VARIABLE_VALUE", adam.Variables[i]);
    }

    [CorpusFact]
    public void Keras3_RestoreIntoBuiltTree_ValuesMatchAndWriteIsByteIdentical()
    {
        var (ckpt, model, adam) = BuildKeras3(_cpu, build: true);
        using var _ = ckpt;
        using var __ = adam;
        var tf = Keras3("ckpt-9");
        ckpt.Restore(tf).AssertConsumed().AssertExistingObjectsMatched().AssertNontrivialMatch();

        AssertKeras3Values(tf, model, adam);
        Assert.Equal(9L, ckpt.SaveCounter.Read<long>()[0]);

        using var dir = new TempDir("k3");
        var written = ckpt.Write(dir.File("ckpt-9"));
        Assert.Equal(TestUtil.ReadTfObjectGraph(tf), TestUtil.ReadTfObjectGraph(written));
        TestUtil.AssertFilesEqual(tf + ".index", written + ".index");
        TestUtil.AssertFilesEqual(tf + ".data-00000-of-00001", written + ".data-00000-of-00001");
    }

    [CorpusFact]
    public void Keras3_RestoreBeforeBuild_EveryValueLandsAtCreation()
    {
        var (ckpt, model, adam) = BuildKeras3(_cpu, build: false);
        using var _ = ckpt;
        using var __ = adam;
        var tf = Keras3("ckpt-10");
        var status = ckpt.Restore(tf);
        // Only the optimizer scalars and the counter exist so far.
        Assert.Throws<CheckpointMismatchException>(() => status.AssertConsumed());
        status.AssertExistingObjectsMatched();
        Assert.Null(model.Fc1.Kernel);

        model.Build();                                              // layer variables: restore-on-create
        adam.Build(model.TrainableVariables, Keras3LayerNames);     // moments: restore-on-create in _variables
        status.AssertConsumed();
        AssertKeras3Values(tf, model, adam);
        Assert.Equal(10L, ckpt.SaveCounter.Read<long>()[0]);
    }

    [CorpusFact]
    public async Task Keras3_RestoreAsyncThroughPipeline_IntoBuiltTree_ValuesMatchTf()
    {
        var (ckpt, model, adam) = BuildKeras3(_cpu, build: true);
        await using var _ = ckpt;
        using var __ = adam;
        var tf = Keras3("ckpt-9");
        (await ckpt.RestoreAsync(tf)).AssertConsumed().AssertExistingObjectsMatched();
        AssertKeras3Values(tf, model, adam);
        Assert.Equal(9L, ckpt.SaveCounter.Read<long>()[0]);
    }

    [CorpusTheory]
    [InlineData(1L << 30)]   // every value prefetched into the host cache
    [InlineData(0L)]         // no cache: every value read on demand
    public async Task Keras3_RestoreAsyncBeforeBuild_EveryValueLandsAtCreation(long cacheBudgetInBytes)
    {
        var (ckpt, model, adam) = BuildKeras3(_cpu, build: false);
        await using var _ = ckpt;
        using var __ = adam;
        await using var pipeline = new Pipeline.CheckpointPipeline(_cpu, new Pipeline.CheckpointPipelineOptions { RestoreCacheBudgetInBytes = cacheBudgetInBytes });
        var tf = Keras3("ckpt-10");
        var status = await ckpt.RestoreAsync(tf, new CheckpointOptions { Pipeline = pipeline });
        Assert.Throws<CheckpointMismatchException>(() => status.AssertConsumed());
        Assert.Null(model.Fc1.Kernel);
        model.Build();                                              // restore-on-create from the prefetch cache
        adam.Build(model.TrainableVariables, Keras3LayerNames);
        status.AssertConsumed();
        AssertKeras3Values(tf, model, adam);
        Assert.Equal(10L, ckpt.SaveCounter.Read<long>()[0]);
    }

    [CorpusFact]
    public void Restore_FlippedDataByte_ThrowsChecksumMismatchAndLeavesTheVariableUntouched()
    {
        using var dir = new TempDir("k3-corrupt-sync");
        var tf = Keras3("ckpt-9");
        File.Copy(tf + ".index", dir.File("ckpt-9.index"));
        var data = File.ReadAllBytes(tf + ".data-00000-of-00001");
        data[100] ^= 0x10;   // inside compensator/fc1/_kernel
        File.WriteAllBytes(dir.File("ckpt-9.data-00000-of-00001"), data);
        var (ckpt, model, adam) = BuildKeras3(_cpu, build: true);
        using var _ = ckpt;
        using var __ = adam;
        var before = model.Fc1.Kernel!.ReadBytes();
        var ex = Assert.Throws<CheckpointFormatException>(() => ckpt.Restore(dir.File("ckpt-9")));
        Assert.Equal(CheckpointFormatError.ChecksumMismatch, ex.Error);
        Assert.Equal(before, model.Fc1.Kernel!.ReadBytes());
    }

    [CorpusFact]
    public async Task RestoreAsync_FlippedDataByte_ThrowsChecksumMismatchAndAssignsNothing()
    {
        using var dir = new TempDir("k3-corrupt");
        var tf = Keras3("ckpt-9");
        File.Copy(tf + ".index", dir.File("ckpt-9.index"));
        var data = File.ReadAllBytes(tf + ".data-00000-of-00001");
        data[100] ^= 0x10;   // inside the first layer kernel (offsets 20..620 hold a [5, 30] float32 tensor)
        File.WriteAllBytes(dir.File("ckpt-9.data-00000-of-00001"), data);
        var (ckpt, model, adam) = BuildKeras3(_cpu, build: true);
        await using var _ = ckpt;
        using var __ = adam;
        var before = model.Fc1.Kernel!.ReadBytes();
        var ex = await Assert.ThrowsAsync<CheckpointFormatException>(() => ckpt.RestoreAsync(dir.File("ckpt-9")));
        Assert.Equal(CheckpointFormatError.ChecksumMismatch, ex.Error);
        Assert.Equal(before, model.Fc1.Kernel!.ReadBytes());
    }

    [CorpusFact]
    public void Keras3_RestoreIntoEmptyCheckpoint_WholeSubtreeRestoredWhenTracked()
    {
        using var ckpt = new Checkpoint { Log = null };
        var tf = Keras3("ckpt-1");
        var status = ckpt.Read(tf);                                 // Read: no save counter is created
        Assert.False(ckpt.HasSaveCounter);
        var nothing = Assert.Throws<CheckpointMismatchException>(() => status.AssertNontrivialMatch());
        Assert.Contains("Nothing to load", nothing.Message, StringComparison.Ordinal);

        var model = new Keras3Model(_cpu, build: true);
        ckpt.Track("compensator", model);                           // deferred at the root → restored now
        TestUtil.AssertMatchesTf(tf, "compensator/fc1/_kernel/.ATTRIBUTES/VARIABLE_VALUE", model.Fc1.Kernel!);
        TestUtil.AssertMatchesTf(tf, "compensator/q/bias/.ATTRIBUTES/VARIABLE_VALUE", model.Q.Bias!);
        status.AssertNontrivialMatch().AssertExistingObjectsMatched();
        var ex = Assert.Throws<CheckpointMismatchException>(() => status.AssertConsumed());
        Assert.Contains(ex.Unmatched, u => u.Contains("compensator_optimizer._iterations", StringComparison.Ordinal));
        Assert.Contains(ex.Unmatched, u => u.Contains("(root).save_counter", StringComparison.Ordinal));
        _ = ckpt.SaveCounter;                                       // created now: consumes the deferred counter value
        Assert.Equal(1L, ckpt.SaveCounter.Read<long>()[0]);
    }

    private static (Checkpoint Ckpt, Sequential Net, LegacyAdam Adam, Variable Step) BuildGolf(Accelerator acc, bool createSlotsOnRestore)
    {
        var adam = new LegacyAdam(acc, createSlotsOnRestore);
        var net = new Sequential([
            new EmptyLayer(),
            new DenseLayer(acc, 7, 64, "dense"),
            new DenseLayer(acc, 64, 32, "dense_1"),
            new DenseLayer(acc, 32, 7, "dense_2"),
        ], adam);
        var step = Variable.Create(acc, "Variable", DType.Int32, TensorShape.Scalar);
        var ckpt = new Checkpoint(("step", step), ("net", net)) { Log = null };
        return (ckpt, net, adam, step);
    }

    [CorpusFact]
    public void KerasLegacy_GolfRestore_SlotsCreatedOnRestore_WriteIsByteIdentical()
    {
        var (ckpt, net, adam, step) = BuildGolf(_cpu, createSlotsOnRestore: true);
        using var _ = ckpt;
        using var __ = adam;
        using var ___ = step;
        var tf = TestUtil.Prefix(TestUtil.GolfCase, "ckpt-2");
        ckpt.Restore(tf).AssertConsumed();

        var kernel0 = ((DenseLayer)net.Layers[1]).Kernel!;
        TestUtil.AssertMatchesTf(tf, "net/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE", kernel0);
        TestUtil.AssertMatchesTf(tf, "net/layer_with_weights-0/kernel/.OPTIMIZER_SLOT/net/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE", adam.GetSlot(kernel0, "m")!);
        TestUtil.AssertMatchesTf(tf, "net/layer_with_weights-0/kernel/.OPTIMIZER_SLOT/net/optimizer/v/.ATTRIBUTES/VARIABLE_VALUE", adam.GetSlot(kernel0, "v")!);
        TestUtil.AssertMatchesTf(tf, "step/.ATTRIBUTES/VARIABLE_VALUE", step);
        Assert.Equal("Adam/dense/kernel/m", adam.GetSlot(kernel0, "m")!.Name);

        // TF 2.3-era graphs carry no has_checkpoint_values: reproduce that for byte identity.
        using var dir = new TempDir("golf");
        var options = new CheckpointOptions { WriteHasCheckpointValues = false };
        var written = ckpt.Write(dir.File("ckpt-2"), options);
        Assert.Equal(TestUtil.ReadTfObjectGraph(tf), TestUtil.ReadTfObjectGraph(written));
        TestUtil.AssertFilesEqual(tf + ".index", written + ".index");
        TestUtil.AssertFilesEqual(tf + ".data-00000-of-00001", written + ".data-00000-of-00001");
    }

    [CorpusFact]
    public void KerasLegacy_SlotsCreatedLazilyAfterRestore_TakeCheckpointValues()
    {
        var (ckpt, net, adam, step) = BuildGolf(_cpu, createSlotsOnRestore: false);
        using var _ = ckpt;
        using var __ = adam;
        using var ___ = step;
        var tf = TestUtil.Prefix(TestUtil.GolfCase, "ckpt-1");
        var status = ckpt.Restore(tf);
        status.AssertExistingObjectsMatched();
        var kernel2 = ((DenseLayer)net.Layers[3]).Kernel!;
        Assert.Null(adam.GetSlot(kernel2, "m"));
        var ex = Assert.Throws<CheckpointMismatchException>(() => status.AssertConsumed());
        Assert.Contains(ex.Unmatched, u => u.Contains("'s state 'm' for", StringComparison.Ordinal));

        adam.CreateSlots(net.TrainableVariables);                   // first "apply_gradients"
        status.AssertConsumed();
        TestUtil.AssertMatchesTf(tf, "net/layer_with_weights-2/kernel/.OPTIMIZER_SLOT/net/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE", adam.GetSlot(kernel2, "m")!);
        TestUtil.AssertMatchesTf(tf, "net/layer_with_weights-2/bias/.OPTIMIZER_SLOT/net/optimizer/v/.ATTRIBUTES/VARIABLE_VALUE",
            adam.GetSlot(((DenseLayer)net.Layers[3]).Bias!, "v")!);
    }

    [CorpusFact]
    public void KerasLegacy_SkipSlotVariables_NoSlotsCreated_ConsumedIgnoresSlotNodes()
    {
        var (ckpt, net, adam, step) = BuildGolf(_cpu, createSlotsOnRestore: true);
        using var _ = ckpt;
        using var __ = adam;
        using var ___ = step;
        var tf = TestUtil.Prefix(TestUtil.GolfCase, "ckpt-2");
        ckpt.Restore(tf, new CheckpointOptions { SkipSlotVariables = true }).AssertConsumed();
        Assert.Empty(adam.SlotNames);
        Assert.Null(adam.GetSlot(((DenseLayer)net.Layers[1]).Kernel!, "m"));
        // Without the option the same restore creates them (and a fresh tree fails AssertConsumed if it cannot).
        var (ckpt2, _, adam2, step2) = BuildGolf(_cpu, createSlotsOnRestore: false);
        using var c2 = ckpt2;
        using var a2 = adam2;
        using var s2 = step2;
        Assert.Throws<CheckpointMismatchException>(() => ckpt2.Restore(tf).AssertConsumed());
    }

    [CorpusFact]
    public void KerasSavedModelVariables_SequentialWithAdam_ExistingObjectsMatched_SlotsLazy()
    {
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        var adam = new LegacyAdam(acc, createSlotsOnRestore: false);
        using var ___ = adam;
        var model = new Sequential([
            new DenseLayer(acc, 5, 5, "test_in"),
            new DenseLayer(acc, 5, 5, "dense"),
            new DenseLayer(acc, 5, 1, "test_out"),
        ], adam);
        // The SavedModel's variables bundle is rooted at the model (like save_weights): restore with a saver on it.
        var saver = new TrackableSaver(model) { Log = null };
        var tf = TestUtil.Prefix(TestUtil.KerasSavedModelCase, "variables/variables");
        var status = saver.Restore(tf);
        status.AssertExistingObjectsMatched().AssertNontrivialMatch();
        var kernel = ((DenseLayer)model.Layers[0]).Kernel!;
        TestUtil.AssertMatchesTf(tf, "layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE", kernel);
        TestUtil.AssertMatchesTf(tf, "optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE", adam.Iter);
        Assert.Null(adam.GetSlot(kernel, "m"));

        adam.CreateSlots(model.TrainableVariables);
        TestUtil.AssertMatchesTf(tf, "layer_with_weights-0/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE", adam.GetSlot(kernel, "m")!);
        TestUtil.AssertMatchesTf(tf, "layer_with_weights-2/bias/.OPTIMIZER_SLOT/optimizer/v/.ATTRIBUTES/VARIABLE_VALUE",
            adam.GetSlot(((DenseLayer)model.Layers[2]).Bias!, "v")!);
        status.AssertExistingObjectsMatched();
        // The metrics (keras_api/metrics/0/total …) are not part of this hand-built model.
        var ex = Assert.Throws<CheckpointMismatchException>(() => status.AssertConsumed());
        Assert.Contains(ex.Unmatched, u => u.Contains("keras_api.metrics", StringComparison.Ordinal));
        status.ExpectPartial();
    }

    [OpenClCorpusFact]
    public void Keras3_OpenCL_RestoreBeforeBuild_ValuesLandInDeviceMemory_WriteIsByteIdentical()
    {
        using var ocl = Accelerator.Create(AcceleratorKind.OpenCL);
        var (ckpt, model, adam) = BuildKeras3(ocl, build: false);
        using var _ = ckpt;
        using var __ = adam;
        var tf = Keras3("ckpt-9");
        var status = ckpt.Restore(tf);
        model.Build();
        adam.Build(model.TrainableVariables, Keras3LayerNames);
        status.AssertConsumed();
        AssertKeras3Values(tf, model, adam);

        using var dir = new TempDir("k3ocl");
        var written = ckpt.Write(dir.File("ckpt-9"));
        TestUtil.AssertFilesEqual(tf + ".index", written + ".index");
        TestUtil.AssertFilesEqual(tf + ".data-00000-of-00001", written + ".data-00000-of-00001");
    }
}

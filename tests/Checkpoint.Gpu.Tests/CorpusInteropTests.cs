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

    private static (Checkpoint Ckpt, Sequential Net, LegacyAdam Adam, Variable Step) BuildGolf(Accelerator acc, bool createSlotsOnRestore, bool buildLayers = true)
    {
        var adam = new LegacyAdam(acc, createSlotsOnRestore);
        var net = new Sequential([
            new EmptyLayer(),
            new DenseLayer(acc, 7, 64, "dense", build: buildLayers),
            new DenseLayer(acc, 64, 32, "dense_1", build: buildLayers),
            new DenseLayer(acc, 32, 7, "dense_2", build: buildLayers),
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

    // ------------------------------------------------------------------ a corrupt slot value: created slots are rolled back

    private const string GolfSlotPrefix = "/.OPTIMIZER_SLOT/net/optimizer/";

    /// <summary>Copies TF's golf ckpt-2 with one byte flipped in the middle of <paramref name="key"/>'s stored value.</summary>
    private static string CopyGolfWithFlippedByte(TempDir dir, string key, out BundleEntry corrupt)
    {
        var tf = TestUtil.Prefix(TestUtil.GolfCase, "ckpt-2");
        var copy = dir.File("ckpt-2");
        File.Copy(tf + ".index", copy + ".index");
        using (var reader = TensorBundleReader.Open(tf)) corrupt = reader.GetEntry(key);
        var data = File.ReadAllBytes(tf + ".data-00000-of-00001");
        data[corrupt.Offset + corrupt.Size / 2] ^= 0x04;
        File.WriteAllBytes(copy + ".data-00000-of-00001", data);
        return copy;
    }

    /// <summary>The golf model's non-slot variables with their TF keys.</summary>
    private static List<(string Key, Variable Variable)> GolfModelVariables(Sequential net, LegacyAdam adam, Variable step)
    {
        var list = new List<(string, Variable)> { ("step/.ATTRIBUTES/VARIABLE_VALUE", step) };
        for (var i = 0; i < 3; i++)
        {
            var layer = (DenseLayer)net.Layers[i + 1];
            list.Add(($"net/layer_with_weights-{i}/kernel/.ATTRIBUTES/VARIABLE_VALUE", layer.Kernel!));
            list.Add(($"net/layer_with_weights-{i}/bias/.ATTRIBUTES/VARIABLE_VALUE", layer.Bias!));
        }
        foreach (var (name, v) in new[] { ("iter", adam.Iter), ("beta_1", adam.Beta1), ("beta_2", adam.Beta2), ("decay", adam.Decay), ("learning_rate", adam.LearningRate) })
            list.Add(($"net/optimizer/{name}/.ATTRIBUTES/VARIABLE_VALUE", v));
        return list;
    }

    /// <summary>Every slot <paramref name="adam"/> holds right now, by variable.</summary>
    private static List<Variable> AllSlots(LegacyAdam adam, IEnumerable<Variable> variables) =>
        variables.SelectMany(v => adam.GetSlots(v).Values).ToList();

    /// <summary>
    /// A TF-written Keras 2 checkpoint whose first slot value (in file order) has a flipped byte, restored into a built model
    /// whose optimizer creates slots on restore: the restore fails naming the key; every slot the walk created is
    /// unregistered (the optimizer has no slots, as before) and disposed; each model variable holds its previous value, or —
    /// only for values before the corrupt one in file order — the whole value TF stored (its CRC32C); then a restore from the
    /// intact checkpoint creates every slot with TF's values.
    /// </summary>
    [CorpusTheory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task KerasLegacy_FlippedSlotByte_RestoreIntoBuiltModel_CreatedSlotsRolledBack(bool async)
    {
        var tf = TestUtil.Prefix(TestUtil.GolfCase, "ckpt-2");
        string slotKey;
        using (var reader = TensorBundleReader.Open(tf))
            slotKey = reader.Entries.Where(e => e.Key.Contains(GolfSlotPrefix, StringComparison.Ordinal)).MinBy(e => e.Offset)!.Key;
        using var dir = new TempDir("golf-flip-slot");
        var corruptPath = CopyGolfWithFlippedByte(dir, slotKey, out var corrupt);

        var (ckpt, net, adam, step) = BuildGolf(_cpu, createSlotsOnRestore: true);
        using var _ = ckpt;
        using var __ = adam;
        using var ___ = step;
        var model = GolfModelVariables(net, adam, step);
        var previous = model.Select((m, i) => Enumerable.Range(0, (int)m.Variable.LengthInBytes).Select(b => (byte)(b * 7 + i + 1)).ToArray()).ToArray();
        for (var i = 0; i < model.Count; i++) model[i].Variable.AssignBytes(previous[i]);
        var trainable = net.TrainableVariables.ToList();
        Assert.Empty(adam.SlotNames);

        var seen = new HashSet<Variable>(ReferenceEqualityComparer.Instance);
        var options = new CheckpointOptions { IO = new Pipeline.CheckpointPipelineOptions { Storage = new OpenObservingStorage(() => seen.UnionWith(AllSlots(adam, trainable))) } };
        var ex = async
            ? await Assert.ThrowsAsync<CheckpointFormatException>(() => ckpt.RestoreAsync(corruptPath, options))
            : Assert.Throws<CheckpointFormatException>(() => ckpt.Restore(corruptPath, options));
        Assert.Equal(CheckpointFormatError.ChecksumMismatch, ex.Error);
        Assert.Equal(slotKey, ex.Key);
        Assert.Contains(slotKey, ex.Message, StringComparison.Ordinal);
        Assert.Equal(corrupt.Offset, ex.Offset);

        // The walk did create the slots (m and v of 6 variables) before the reads; none is left registered or alive.
        Assert.Equal(2 * trainable.Count, seen.Count);
        Assert.All(seen, slot => Assert.True(slot.IsDisposed, $"slot '{slot.Name}' is still alive"));
        Assert.Empty(adam.SlotNames);
        Assert.All(trainable, v => Assert.Empty(adam.GetSlots(v)));

        using (var reader = TensorBundleReader.Open(tf))
        {
            for (var i = 0; i < model.Count; i++)
            {
                var (key, variable) = model[i];
                var entry = reader.GetEntry(key);
                var now = variable.ReadBytes();
                if (entry.Offset > corrupt.Offset)
                    Assert.True(previous[i].AsSpan().SequenceEqual(now), $"{key} (after the corrupt value in file order) lost its previous value");
                else
                    Assert.Equal(entry.Crc32C, MaskedCrc32C.ComputeMasked(now));   // landed whole before the corrupt value was read
            }
        }

        // A later restore from the intact TF checkpoint creates the slots, with TF's values.
        (async ? await ckpt.RestoreAsync(tf) : ckpt.Restore(tf)).AssertConsumed();
        Assert.Equal(new[] { "m", "v" }, adam.SlotNames);
        for (var i = 0; i < 3; i++)
        {
            var layer = (DenseLayer)net.Layers[i + 1];
            foreach (var (name, v) in new[] { ("kernel", layer.Kernel!), ("bias", layer.Bias!) })
                foreach (var slot in new[] { "m", "v" })
                    TestUtil.AssertMatchesTf(tf, $"net/layer_with_weights-{i}/{name}{GolfSlotPrefix}{slot}/.ATTRIBUTES/VARIABLE_VALUE", adam.GetSlot(v, slot)!);
        }
        foreach (var (key, variable) in model) TestUtil.AssertMatchesTf(tf, key, variable);
    }

    /// <summary>
    /// Restore-on-create: the restore parks the layers' values (no prefetch, so nothing is read yet); building the first
    /// layer creates its kernel and, from the kernel's walk, its slots — the <c>v</c> value is corrupt. The build fails
    /// naming the key, the <c>m</c> slot that walk already created is unregistered and disposed, and the optimizer has no
    /// slots, as before.
    /// </summary>
    [CorpusFact]
    public async Task KerasLegacy_FlippedSlotByte_RestoreOnCreate_SlotsOfTheFailedWalkRolledBack()
    {
        const string vKey = "net/layer_with_weights-0/kernel" + GolfSlotPrefix + "v/.ATTRIBUTES/VARIABLE_VALUE";
        using var dir = new TempDir("golf-flip-create");
        var corruptPath = CopyGolfWithFlippedByte(dir, vKey, out var corrupt);
        var (ckpt, net, adam, step) = BuildGolf(_cpu, createSlotsOnRestore: true, buildLayers: false);
        await using var _ = ckpt;
        using var __ = adam;
        using var ___ = step;
        var layer0 = (DenseLayer)net.Layers[1];
        var seen = new HashSet<Variable>(ReferenceEqualityComparer.Instance);
        var options = new CheckpointOptions
        {
            IO = new Pipeline.CheckpointPipelineOptions
            {
                RestoreCacheBudgetInBytes = 0,
                // During the build the kernel is tracked (its walk runs inside AddVariable) but not yet returned to the layer.
                Storage = new OpenObservingStorage(() => { if (layer0.LookupDependency("kernel") is Variable k) seen.UnionWith(adam.GetSlots(k).Values); }),
            },
        };
        var status = await ckpt.RestoreAsync(corruptPath, options);
        Assert.Empty(adam.SlotNames);

        var ex = Assert.Throws<CheckpointFormatException>(layer0.Build);
        Assert.Equal(CheckpointFormatError.ChecksumMismatch, ex.Error);
        Assert.Equal(vKey, ex.Key);
        Assert.Equal(corrupt.Offset, ex.Offset);
        Assert.Null(layer0.Kernel);
        Assert.Null(layer0.LookupDependency("kernel"));
        Assert.Empty(adam.SlotNames);
        Assert.NotEmpty(seen);   // m was created (and observed) before v's read failed
        Assert.All(seen, slot => Assert.True(slot.IsDisposed, $"slot '{slot.Name}' is still alive"));
        status.ExpectPartial().Dispose();
    }
}

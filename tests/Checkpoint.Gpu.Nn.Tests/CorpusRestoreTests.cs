using CheckpointGpu.Devices;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Nn.Tests;

/// <summary>
/// Hand-built models made of Nn classes restore TensorFlow-written checkpoints from the corpus:
/// <c>sm-keras-tf23-adam-metrics</c> (Keras 2 Sequential + legacy Adam, SavedModel variables rooted at the model) and
/// <c>obj-keras3-tf219-manager-3ckpts</c> (tf.train.Checkpoint of a Keras 3 model and Keras 3 Adam).
/// </summary>
public sealed class CorpusRestoreTests
{
    // ------------------------------------------------------------------ Keras 2: sm-keras-tf23-adam-metrics
    // Sequential: Dense test_in 5→5, Dense dense 5→5, Dense test_out 5→1; compiled with legacy Adam (edge 'optimizer');
    // the SavedModel also tracks keras_api/metrics/{0,1}/{total,count} (compiled loss/metric means) and Keras'
    // SavedModel-only edges (trainable_variables, variables, keras_api lists, signatures) that hold no values.

    private static readonly string[] Keras2Layers = ["test_in", "dense", "test_out"];

    /// <summary>A Keras 2 <c>Mean</c> metric: variables <c>total</c> and <c>count</c>.</summary>
    private sealed class MeanMetric : Module
    {
        public MeanMetric(Accelerator acc) : base("mean")
        {
            Total = AddWeight("total", acc, Format.DType.Float, Format.TensorShape.Scalar, fullName: "total", trainable: false);
            Count = AddWeight("count", acc, Format.DType.Float, Format.TensorShape.Scalar, fullName: "count", trainable: false);
        }

        public Variable Total { get; }
        public Variable Count { get; }
    }

    private static (Sequential Model, Adam Adam) BuildKeras2(Accelerator acc, bool build)
    {
        var model = new Sequential();
        model.Add(new Dense(acc, 5, Activation.Relu, KerasNaming.Keras2, "test_in"));
        model.Add(new Dense(acc, 5, Activation.Relu, KerasNaming.Keras2, "dense"));
        model.Add(new Dense(acc, 1, Activation.Linear, KerasNaming.Keras2, "test_out"));
        var adam = new Adam(acc, KerasNaming.Keras2);
        model.Optimizer = adam;
        if (build) model.Build(5);
        return (model, adam);
    }

    private static string Keras2Key(int layer, string variable, string? slot = null) =>
        slot is null
            ? $"layer_with_weights-{layer}/{variable}/.ATTRIBUTES/VARIABLE_VALUE"
            : $"layer_with_weights-{layer}/{variable}/.OPTIMIZER_SLOT/optimizer/{slot}/.ATTRIBUTES/VARIABLE_VALUE";

    [CorpusFact]
    public void Keras2Sequential_RestoreBeforeBuild_LayersRestoredOnCreateAndSlotsWhenOptimizerCreatesThem()
    {
        var acc = Backends.Get("cpu");
        var (model, adam) = BuildKeras2(acc, build: false);
        using var _ = model;
        using var __ = adam;
        var prefix = Corpus.Keras2SavedModelPrefix;
        var saver = new TrackableSaver(model) { Log = null };
        using var status = saver.Restore(prefix);

        // Unbuilt layers are reached through their 'layer-<i>' edges; their kernels wait for Build.
        Assert.Empty(model.Variables);
        status.AssertExistingObjectsMatched();
        model.Build(5);
        for (var i = 0; i < 3; i++)
        {
            var dense = model.DenseLayers[i];
            Assert.Equal($"{Keras2Layers[i]}/kernel", dense.Kernel!.Name);
            Corpus.AssertMatchesTf(prefix, Keras2Key(i, "kernel"), dense.Kernel);
            Corpus.AssertMatchesTf(prefix, Keras2Key(i, "bias"), dense.Bias!);
        }
        Corpus.AssertMatchesTf(prefix, "optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE", adam.Iterations);
        Corpus.AssertMatchesTf(prefix, "optimizer/learning_rate/.ATTRIBUTES/VARIABLE_VALUE", adam.LearningRate);
        Corpus.AssertMatchesTf(prefix, "optimizer/beta_1/.ATTRIBUTES/VARIABLE_VALUE", adam.GetHyperVariable("beta_1"));
        Corpus.AssertMatchesTf(prefix, "optimizer/beta_2/.ATTRIBUTES/VARIABLE_VALUE", adam.GetHyperVariable("beta_2"));
        Corpus.AssertMatchesTf(prefix, "optimizer/decay/.ATTRIBUTES/VARIABLE_VALUE", adam.GetHyperVariable("decay"));

        // Slots do not exist yet: their values are parked in the optimizer, so the checkpoint is not consumed.
        Assert.Empty(adam.SlotNames);
        Assert.ThrowsAny<Exception>(() => status.AssertConsumed());

        // The lazy creation path of the first step (Build) creates m and v from the parked values.
        adam.Build(model.TrainableVariables);
        Assert.Equal(["m", "v"], adam.SlotNames);
        for (var i = 0; i < 3; i++)
        {
            var dense = model.DenseLayers[i];
            foreach (var slot in new[] { "m", "v" })
            {
                Corpus.AssertMatchesTf(prefix, Keras2Key(i, "kernel", slot), adam.GetSlot(dense.Kernel!, slot)!);
                Corpus.AssertMatchesTf(prefix, Keras2Key(i, "bias", slot), adam.GetSlot(dense.Bias!, slot)!);
            }
        }
        Assert.Equal($"Adam/test_in/kernel/m", adam.GetSlot(model.DenseLayers[0].Kernel!, "m")!.Name);
        // Only the SavedModel's metric variables remain unmatched.
        var error = Assert.ThrowsAny<Exception>(() => status.AssertConsumed());
        Assert.Contains("keras_api", error.Message, StringComparison.Ordinal);
        status.ExpectPartial().AssertExistingObjectsMatched().AssertNontrivialMatch();
    }

    [CorpusFact]
    public void Keras2Sequential_FirstStepAfterRestore_UsesRestoredSlotsAndHypers()
    {
        var acc = Backends.Get("cpu");
        var (model, adam) = BuildKeras2(acc, build: true);
        using var _ = model;
        using var __ = adam;
        var prefix = Corpus.Keras2SavedModelPrefix;
        using var status = new TrackableSaver(model) { Log = null }.Restore(prefix);
        status.ExpectPartial().AssertExistingObjectsMatched();
        Assert.Empty(adam.SlotNames);

        // One step with a known gradient: the slots are created at this step from the parked TF values.
        var variables = model.TrainableVariables;
        var grads = variables.Select((v, i) => DeviceData.Upload(acc, DeviceData.Random((int)v.ElementCount, (ulong)(100 + i)))).ToArray();
        try
        {
            adam.ApplyGradients(variables.Select((v, i) => new Gradient(v, grads[i])).ToArray());

            var iter = BitConverter.ToInt64(Corpus.ReadTensor(prefix, "optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"));
            Assert.Equal(iter + 1, adam.Iterations.Read<long>()[0]);
            double lr = Corpus.ReadFloats(prefix, "optimizer/learning_rate/.ATTRIBUTES/VARIABLE_VALUE")[0];
            double b1 = Corpus.ReadFloats(prefix, "optimizer/beta_1/.ATTRIBUTES/VARIABLE_VALUE")[0];
            double b2 = Corpus.ReadFloats(prefix, "optimizer/beta_2/.ATTRIBUTES/VARIABLE_VALUE")[0];
            var t = iter + 1;
            var alpha = lr * Math.Sqrt(1 - Math.Pow(b2, t)) / (1 - Math.Pow(b1, t));
            for (var i = 0; i < variables.Count; i++)
            {
                var layer = i / 2;
                var name = i % 2 == 0 ? "kernel" : "bias";
                var v0 = Corpus.ReadFloats(prefix, Keras2Key(layer, name));
                var m0 = Corpus.ReadFloats(prefix, Keras2Key(layer, name, "m"));
                var s0 = Corpus.ReadFloats(prefix, Keras2Key(layer, name, "v"));
                var g = DeviceData.Download(grads[i], v0.Length);
                var v1 = variables[i].Read<float>();
                var m1 = adam.GetSlot(variables[i], "m")!.Read<float>();
                for (var e = 0; e < v0.Length; e++)
                {
                    var m = m0[e] + (g[e] - (double)m0[e]) * (1 - b1);
                    var s = s0[e] + ((double)g[e] * g[e] - s0[e]) * (1 - b2);
                    var expected = v0[e] - m * alpha / (Math.Sqrt(s) + 1e-7);
                    Assert.True(Math.Abs(m1[e] - m) <= 1e-6, $"{variables[i].Name} m[{e}] {m1[e]} vs {m}");
                    Assert.True(Math.Abs(v1[e] - expected) <= 1e-6 + 1e-6 * Math.Abs(expected), $"{variables[i].Name}[{e}] {v1[e]} vs {expected}");
                }
            }
        }
        finally
        {
            foreach (var g in grads) g.Dispose();
        }
    }

    [CorpusFact]
    public void Keras2Sequential_WithMetricModules_AssertConsumedAfterSlotsCreated()
    {
        var acc = Backends.Get("cpu");
        var (model, adam) = BuildKeras2(acc, build: true);
        using var _ = model;
        using var __ = adam;
        // Mirror the SavedModel's compiled metrics with plain Modules: keras_api/metrics/{0,1}/{total,count}.
        var kerasApi = new Module("keras_api");
        var metrics = kerasApi.Track("metrics", new TrackableList<Module>([new MeanMetric(acc), new MeanMetric(acc)]));
        model.Track("keras_api", kerasApi);
        var prefix = Corpus.Keras2SavedModelPrefix;
        using var status = new TrackableSaver(model) { Log = null }.Restore(prefix);
        Assert.ThrowsAny<Exception>(() => status.AssertConsumed());   // slots still parked
        adam.Build(model.TrainableVariables);
        status.AssertConsumed();
        Corpus.AssertMatchesTf(prefix, "keras_api/metrics/1/total/.ATTRIBUTES/VARIABLE_VALUE", ((MeanMetric)metrics[1]).Total);
        Corpus.AssertMatchesTf(prefix, "keras_api/metrics/0/count/.ATTRIBUTES/VARIABLE_VALUE", ((MeanMetric)metrics[0]).Count);
        foreach (var m in metrics) m.Dispose();
    }

    [CorpusFact]
    public void Keras2Sequential_RestoreSlotsEagerly_CreatesSlotsDuringRestore()
    {
        var acc = Backends.Get("cpu");
        using var model = new Sequential();
        model.Add(new Dense(acc, 5, name: "test_in"));
        model.Add(new Dense(acc, 5, name: "dense"));
        model.Add(new Dense(acc, 1, name: "test_out"));
        model.Build(5);
        using var adam = new Adam(acc) { RestoreSlotsEagerly = true };
        model.Optimizer = adam;
        var prefix = Corpus.Keras2SavedModelPrefix;
        using var status = new TrackableSaver(model) { Log = null }.Restore(prefix);
        Assert.Equal(["m", "v"], adam.SlotNames);
        Corpus.AssertMatchesTf(prefix, Keras2Key(2, "kernel", "v"), adam.GetSlot(model.DenseLayers[2].Kernel!, "v")!);
        status.ExpectPartial().AssertExistingObjectsMatched();
    }

    // ------------------------------------------------------------------ Keras 3: obj-keras3-tf219-manager-3ckpts
    // Checkpoint(compensator=Model 'compensator_network' {fc1: Dense 5→30 (dense_18), fc2: Dense 30→40 (dense_19),
    // q: Dense 40→1 (dense_20)}, compensator_optimizer=Keras 3 Adam 'adam'), managed by CheckpointManager.

    private sealed class CompensatorNetwork : Model
    {
        public CompensatorNetwork(Accelerator acc) : base("compensator_network")
        {
            Fc1 = Track("fc1", new Dense(acc, 30, Activation.Relu, KerasNaming.Keras3, "dense_18"));
            Fc2 = Track("fc2", new Dense(acc, 40, Activation.Relu, KerasNaming.Keras3, "dense_19"));
            Q = Track("q", new Dense(acc, 1, Activation.Linear, KerasNaming.Keras3, "dense_20"));
        }

        public Dense Fc1 { get; }
        public Dense Fc2 { get; }
        public Dense Q { get; }
    }

    private static void AssertKeras3Values(string prefix, CompensatorNetwork model, Adam adam)
    {
        string[] edges = ["fc1", "fc2", "q"];
        var layers = new[] { model.Fc1, model.Fc2, model.Q };
        for (var i = 0; i < 3; i++)
        {
            Corpus.AssertMatchesTf(prefix, $"compensator/{edges[i]}/_kernel/.ATTRIBUTES/VARIABLE_VALUE", layers[i].Kernel!);
            Corpus.AssertMatchesTf(prefix, $"compensator/{edges[i]}/bias/.ATTRIBUTES/VARIABLE_VALUE", layers[i].Bias!);
        }
        Corpus.AssertMatchesTf(prefix, "compensator_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE", adam.Iterations);
        Corpus.AssertMatchesTf(prefix, "compensator_optimizer/_learning_rate/.ATTRIBUTES/VARIABLE_VALUE", adam.LearningRate);
        for (var i = 0; i < 6; i++)
        {
            Corpus.AssertMatchesTf(prefix, $"compensator_optimizer/_variables/{2 + 2 * i}/.ATTRIBUTES/VARIABLE_VALUE", adam.Momentums[i]);
            Corpus.AssertMatchesTf(prefix, $"compensator_optimizer/_variables/{3 + 2 * i}/.ATTRIBUTES/VARIABLE_VALUE", adam.Velocities[i]);
        }
    }

    public static TheoryData<string, string> Keras3Rows()
    {
        var data = new TheoryData<string, string>();
        foreach (var device in Backends.Names())
            foreach (var ckpt in new[] { "ckpt-1", "ckpt-9", "ckpt-10" })
                data.Add(device, ckpt);
        return data;
    }

    [Theory]
    [MemberData(nameof(Keras3Rows))]
    public void Keras3Model_RestoreIntoBuiltTree_ValuesMatchAndWriteIsByteIdenticalToTensorFlow(string device, string ckptName)
    {
        if (TfCorpus.SkipReason is not null) return;
        var acc = Backends.Get(device);
        using var model = new CompensatorNetwork(acc);
        using var adam = new Adam(acc, KerasNaming.Keras3);
        model.Build(5);
        adam.Build(model.TrainableVariables);
        using var ckpt = new Checkpoint(("compensator", model), ("compensator_optimizer", adam)) { Log = null };
        var tf = Corpus.Keras3(ckptName);
        using var status = ckpt.Restore(tf);
        status.AssertConsumed().AssertExistingObjectsMatched().AssertNontrivialMatch();
        AssertKeras3Values(tf, model, adam);
        Assert.Equal("compensator_network/kernel", model.Fc2.Kernel!.Name);
        Assert.Equal("adam/compensator_network_dense_19_kernel_velocity", adam.Velocities[2].Name);

        using var dir = new TempDir("k3");
        var written = ckpt.Write(dir.File(ckptName));
        Assert.Equal(Corpus.ReadObjectGraph(tf), Corpus.ReadObjectGraph(written));
        Assert.Equal(File.ReadAllBytes(tf + ".index"), File.ReadAllBytes(written + ".index"));
        Assert.Equal(File.ReadAllBytes(tf + ".data-00000-of-00001"), File.ReadAllBytes(written + ".data-00000-of-00001"));
    }

    [CorpusFact]
    public void Keras3Model_RestoreBeforeBuildingAnything_EveryValueArrivesOnCreationAndTrainingContinues()
    {
        var acc = Backends.Get("cpu");
        using var ckpt = new Checkpoint { Log = null };
        var tf = Corpus.Keras3("ckpt-10");
        using var status = ckpt.Restore(tf);          // nothing exists yet but the save counter
        using var model = new CompensatorNetwork(acc);
        ckpt.Track("compensator", model);
        using var adam = new Adam(acc, KerasNaming.Keras3);
        ckpt.Track("compensator_optimizer", adam);
        status.AssertExistingObjectsMatched();
        Assert.ThrowsAny<Exception>(() => status.AssertConsumed());

        model.Build(5);                                // layer variables: restore-on-create
        using var trainer = new MlpTrainer(model.Layers, adam, new RegressionTask(5, 1, 8, seed: 3));
        var before = model.Fc1.Kernel!.Read<float>();
        trainer.ComputeGradients(0);
        Assert.False(adam.IsBuilt);
        // Build is what the first ApplyGradients does; check the moments before they move.
        adam.Build(model.TrainableVariables);
        status.AssertConsumed();
        AssertKeras3Values(tf, model, adam);
        Assert.Equal(10L, ckpt.SaveCounter.Read<long>()[0]);

        trainer.TrainStep();
        Assert.Equal(BitConverter.ToInt64(Corpus.ReadTensor(tf, "compensator_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")) + 1,
            adam.Iterations.Read<long>()[0]);
        Assert.NotEqual(before, model.Fc1.Kernel.Read<float>());
    }
}

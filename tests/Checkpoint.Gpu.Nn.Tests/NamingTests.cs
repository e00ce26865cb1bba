using CheckpointGpu.Devices;

namespace CheckpointGpu.Nn.Tests;

/// <summary>Edge names, edge order, variable names and checkpoint keys of the Nn classes in both Keras namings.</summary>
public sealed class NamingTests
{
    private static Accelerator Cpu => Backends.Get("cpu");

    private static string[] Edges(Trackable t) => t.GetChildren().Select(c => c.Name).ToArray();

    [Fact]
    public void Sequential_Built_InterleavesLayerWithWeightsBeforeLayerThenOptimizer()
    {
        using var model = new Sequential();
        model.Add(new Dense(Cpu, 4));
        model.Add(new Module("dropout"));   // no weights: only layer-1
        model.Add(new Dense(Cpu, 2));
        using var adam = new Adam(Cpu);
        model.Optimizer = adam;
        model.Build(3);
        Assert.Equal(["layer_with_weights-0", "layer-0", "layer-1", "layer_with_weights-1", "layer-2", "optimizer"], Edges(model));
        Assert.Equal(["dense", "dropout", "dense_1"], model.Layers.Select(l => l.Name));
        Assert.Equal("dense_1/kernel", model.DenseLayers[1].Kernel!.Name);

        using var ckpt = new Checkpoint(("model", model)) { Log = null };
        var keys = new ObjectGraphView(ckpt).ListCheckpointKeys();
        Assert.Contains("model/layer_with_weights-1/kernel/.ATTRIBUTES/VARIABLE_VALUE", keys);
        Assert.Contains("model/layer_with_weights-0/bias/.ATTRIBUTES/VARIABLE_VALUE", keys);
        Assert.Contains("model/optimizer/beta_1/.ATTRIBUTES/VARIABLE_VALUE", keys);
        Assert.DoesNotContain(keys, k => k.Contains("model/layer-", StringComparison.Ordinal));
    }

    [Fact]
    public void Sequential_Unbuilt_HasOnlyLayerEdges()
    {
        using var model = new Sequential();
        model.Add(new Dense(Cpu, 4));
        model.Add(new Dense(Cpu, 2));
        Assert.Equal(["layer-0", "layer-1"], Edges(model));
        Assert.Throws<ArgumentException>(() => model.Add(new Dense(Cpu, 1, name: "dense")));
    }

    [Fact]
    public void Dense_Keras3InModel_UsesUnderscoreKernelAndModelScope()
    {
        using var model = new Model("net");
        var fc = model.Track("fc", new Dense(Cpu, 3, naming: KerasNaming.Keras3, name: "dense_7"));
        model.Build(2);
        Assert.Equal(["_kernel", "bias"], Edges(fc));
        Assert.Equal("net/kernel", fc.Kernel!.Name);
        Assert.Equal(new Format.TensorShape(2, 3), fc.Kernel.Shape);
        using var adam = new Adam(Cpu, KerasNaming.Keras3);
        adam.Build(model.TrainableVariables);
        Assert.Equal("adam/net_dense_7_kernel_momentum", adam.Momentums[0].Name);
        Assert.Equal("adam/net_dense_7_bias_velocity", adam.Velocities[1].Name);
    }

    [Fact]
    public void Dense_Keras2_KernelBiasEdgesAndGlorotInitDeterministic()
    {
        using var a = new Dense(Cpu, 7, name: "d", seed: 9);
        using var b = new Dense(Cpu, 7, name: "d", seed: 9);
        a.Build(5);
        b.Build(5);
        Assert.Equal(["kernel", "bias"], Edges(a));
        Assert.Equal("d/kernel", a.Kernel!.Name);
        var ka = a.Kernel.Read<float>();
        Assert.Equal(ka, b.Kernel!.Read<float>());
        var limit = MathF.Sqrt(6f / 12f);
        Assert.All(ka, v => Assert.InRange(v, -limit, limit));
        Assert.All(a.Bias!.Read<float>(), v => Assert.Equal(0f, v));
        Assert.Throws<InvalidOperationException>(() => a.Build(6));
    }

    [Fact]
    public void AdamKeras2_EdgesSortedAfterIter_SlotsCreatedLazilyAtFirstStep()
    {
        using var adam = new Adam(Cpu, learningRate: 0.5f);
        Assert.Equal(["iter", "beta_1", "beta_2", "decay", "learning_rate"], Edges(adam));
        Assert.Equal(["Adam/iter", "Adam/beta_1", "Adam/beta_2", "Adam/decay", "Adam/learning_rate"],
            adam.GetChildren().Select(c => ((Variable)c.Target).Name));
        Assert.Equal(0.5f, adam.LearningRate.Read<float>()[0]);
        using var dense = new Dense(Cpu, 2, name: "dense");
        dense.Build(3);
        Assert.Empty(adam.SlotNames);
        using var gk = DeviceData.Upload(Cpu, new float[6]);
        using var gb = DeviceData.Upload(Cpu, new float[2]);
        adam.ApplyGradients([new Gradient(dense.Kernel!, gk), new Gradient(dense.Bias!, gb)]);
        Assert.Equal(["m", "v"], adam.SlotNames);
        Assert.Equal("Adam/dense/kernel/m", adam.GetSlot(dense.Kernel!, "m")!.Name);
        Assert.Equal(1L, adam.Iterations.Read<long>()[0]);

        using var root = new Module("root");
        root.Track("dense", dense);
        root.Track("optimizer", adam);
        var keys = new ObjectGraphView(root).ListCheckpointKeys();
        Assert.Contains("dense/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE", keys);
        Assert.Contains("dense/bias/.OPTIMIZER_SLOT/optimizer/v/.ATTRIBUTES/VARIABLE_VALUE", keys);
        root.Track<Trackable?>("dense", null);   // the test disposes dense itself
    }

    [Fact]
    public void AdamKeras3_EdgeOrderAndInterleavedVariables()
    {
        using var adam = new Adam(Cpu, KerasNaming.Keras3);
        Assert.Equal(["_variables", "_trainable_variables", "_trainable_variables_indices", "_iterations", "_learning_rate"], Edges(adam));
        Assert.Equal("adam/iteration", adam.Iterations.Name);
        Assert.Equal(Format.DType.Int64, adam.Iterations.DType);
        using var dense = new Dense(Cpu, 2, naming: KerasNaming.Keras3, name: "d");
        dense.Build(3);
        adam.Build(dense.TrainableVariables);
        Assert.Equal(["_variables", "_trainable_variables", "_trainable_variables_indices", "_iterations", "_learning_rate", "_momentums", "_velocities"], Edges(adam));
        var list = adam.StateVariableList;
        Assert.Equal(6, list.Count);
        Assert.Same(adam.Iterations, list[0]);
        Assert.Same(adam.LearningRate, list[1]);
        Assert.Same(adam.Momentums[0], list[2]);
        Assert.Same(adam.Velocities[0], list[3]);
        Assert.Same(adam.Momentums[1], list[4]);
        Assert.Equal("adam/d_kernel_momentum", adam.Momentums[0].Name);
        using var other = new Dense(Cpu, 1, naming: KerasNaming.Keras3);
        other.Build(1);
        Assert.Throws<InvalidOperationException>(() => adam.Build(other.TrainableVariables));
    }

    [Fact]
    public void Sgd_Keras2EdgesAndMomentumSlot_Keras3MomentumsList()
    {
        using var sgd = new Sgd(Cpu, momentum: 0.9f);
        Assert.Equal(["iter", "decay", "learning_rate", "momentum"], Edges(sgd));
        using var plain = new Sgd(Cpu);
        using var dense = new Dense(Cpu, 2);
        dense.Build(2);
        using var gk = DeviceData.Upload(Cpu, [1f, 1f, 1f, 1f]);
        using var gb = DeviceData.Upload(Cpu, [1f, 1f]);
        var before = dense.Bias!.Read<float>();
        plain.ApplyGradients([new Gradient(dense.Kernel!, gk), new Gradient(dense.Bias!, gb)]);
        Assert.Empty(plain.SlotNames);
        Assert.Equal(before.Select(b => b - 0.01f), dense.Bias.Read<float>());
        sgd.ApplyGradients([new Gradient(dense.Kernel!, gk), new Gradient(dense.Bias!, gb)]);
        Assert.Equal(["momentum"], sgd.SlotNames);
        Assert.Equal(-0.01f, sgd.GetSlot(dense.Bias, "momentum")!.Read<float>()[0]);

        using var k3 = new Sgd(Cpu, KerasNaming.Keras3, momentum: 0.5f);
        k3.Build(dense.TrainableVariables);
        Assert.Equal("momentums", Edges(k3)[^1]);
        Assert.Equal("SGD/dense_kernel_momentum", k3.Momentums[0].Name);
    }

    [Fact]
    public async Task ApplyGradientsAsync_AwaitsBarrierForEveryMutatedVariable_SyncApplyRefuses()
    {
        using var adam = new Adam(Cpu);
        using var dense = new Dense(Cpu, 2);
        dense.Build(2);
        using var gk = DeviceData.Upload(Cpu, new float[4]);
        using var gb = DeviceData.Upload(Cpu, new float[2]);
        Gradient[] grads = [new Gradient(dense.Kernel!, gk), new Gradient(dense.Bias!, gb)];
        var barrier = new RecordingBarrier();
        adam.WriteBarrier = barrier;
        Assert.Throws<InvalidOperationException>(() => adam.ApplyGradients(grads));
        await adam.ApplyGradientsAsync(grads);
        Assert.Equal(
            [adam.GetSlot(dense.Kernel!, "m")!, adam.GetSlot(dense.Kernel!, "v")!, dense.Kernel!,
             adam.GetSlot(dense.Bias!, "m")!, adam.GetSlot(dense.Bias!, "v")!, dense.Bias!, adam.Iterations],
            barrier.Seen);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await adam.ApplyGradientsAsync(grads, cts.Token));
        Assert.Equal(1L, adam.Iterations.Read<long>()[0]);
    }

    private sealed class RecordingBarrier : IVariableWriteBarrier
    {
        public List<Variable> Seen { get; } = [];

        public async ValueTask WaitUntilStagedAsync(Variable variable, CancellationToken cancellationToken)
        {
            await Task.Yield();   // a real wait: exercises the asynchronous path
            Seen.Add(variable);
        }
    }

    [Fact]
    public void Module_VariablesInTrackingOrder_ExcludeOptimizerState()
    {
        using var model = new Sequential();
        model.Add(new Dense(Cpu, 3, name: "a"));
        model.Add(new Dense(Cpu, 1, name: "b"));
        model.Build(2);
        using var adam = new Adam(Cpu);
        model.Optimizer = adam;
        Assert.Equal(["a/kernel", "a/bias", "b/kernel", "b/bias"], model.TrainableVariables.Select(v => v.Name));
        Assert.Equal(4, model.Variables.Count);
    }
}

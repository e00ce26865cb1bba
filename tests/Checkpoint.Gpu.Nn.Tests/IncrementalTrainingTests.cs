using CheckpointGpu.Format;

namespace CheckpointGpu.Nn.Tests;

/// <summary>
/// Change tracking through the optimizer kernels (issue 14): after a training step, an incremental save must rewrite every
/// variable and every slot the kernels touched, even though they sat in a data file the save could have linked.
/// </summary>
public sealed class IncrementalTrainingTests
{
    public static TheoryData<string> Optimizers => ["adam", "sgd-momentum"];

    [Theory]
    [MemberData(nameof(Optimizers))]
    public void OptimizerStep_BetweenIncrementalSaves_IsNeverSkipped(string optimizerName)
    {
        var acc = Backends.Get("cpu");
        using var dir = new TempDir("incr-opt");
        using var model = Mlp.CreateSequential(acc, 4, [16], 1, Activation.Tanh, seed: 1);
        using Optimizer optimizer = optimizerName == "adam" ? new Adam(acc, learningRate: 0.01f) : new Sgd(acc, learningRate: 0.01f, momentum: 0.9f);
        using var trainer = new MlpTrainer(model.DenseLayers, optimizer, new RegressionTask(4, 1, 32, seed: 2));
        trainer.TrainStep();   // creates the slots
        using var checkpoint = new Checkpoint(("model", model), ("optimizer", optimizer)) { Log = null };
        var manager = new CheckpointManager(checkpoint, dir.File("incr"), maxToKeep: null) { IncrementalSaves = new IncrementalSaveOptions() };
        manager.Save();
        manager.Save();
        manager.Save();
        Assert.True(manager.LastIncrementalSave!.ShardsLinked == 1, "nothing trained: the stable file is linked");

        // Model variables and their slots (Keras 2: m, v or momentum) are written only by the update kernels.
        var written = model.DenseLayers.SelectMany(l => new[] { l.Kernel!, l.Bias! })
            .SelectMany(v => optimizer.GetSlots(v).Values.Prepend(v)).ToArray();
        Assert.True(written.Length >= 8, $"expected the slots too, got {written.Length} variables");
        var versions = written.Select(v => v.ModificationVersion).ToArray();
        trainer.TrainStep();
        Assert.All(written.Zip(versions), p => Assert.NotEqual(p.Second, p.First.ModificationVersion));
        var incremental = manager.Save()!;
        Assert.Equal(0, manager.LastIncrementalSave!.ShardsLinked);

        // Every tensor (variables and slots) equals a full save of the same state, checksum for checksum.
        var full = checkpoint.Write(dir.File("full/ckpt"));
        using var a = TensorBundleReader.Open(incremental);
        using var b = TensorBundleReader.Open(full);
        var keys = b.EntriesInDataOrder.Where(e => e.Key != CheckpointKeys.ObjectGraph && !e.Key.StartsWith("save_counter", StringComparison.Ordinal)).ToArray();
        Assert.Contains(keys, e => e.Key.Contains(".OPTIMIZER_SLOT", StringComparison.Ordinal) || e.Key.Contains("optimizer/_variables", StringComparison.Ordinal));
        foreach (var e in keys)
        {
            Assert.True(a.TryGetEntry(e.Key, out var other), $"'{e.Key}' missing from the incremental checkpoint");
            Assert.Equal(e.Crc32C, other!.Crc32C);
        }
    }
}

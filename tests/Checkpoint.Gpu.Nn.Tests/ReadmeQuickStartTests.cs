using CheckpointGpu.Devices;
using CheckpointGpu.Nn;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Nn.Tests;

/// <summary>
/// The README's C# quick start, compiled and run: a first run trains and saves through a CheckpointManager; a
/// "restarted" run calls RestoreOrInitialize before its model exists and must continue from exactly the saved values.
/// Keep <see cref="QuickStart"/> and README.md in sync (the packaging test compiles the README's own text, as a
/// console app restoring the packed packages; this one checks the resume bit for bit).
/// </summary>
public sealed class ReadmeQuickStartTests
{
    // ---- README.md, "Quick start in C#" (from here) ----
    private static float[] QuickStart(string directory, long totalSteps)
    {
        using var device = Accelerator.Create(AcceleratorKind.Cpu);   // or AcceleratorKind.OpenCL
        var model = new Sequential();
        model.Add(new Dense(device, 32, Activation.Relu));
        model.Add(new Dense(device, 1));
        var optimizer = new Adam(device, learningRate: 0.01f);
        using var checkpoint = new Checkpoint(("model", model), ("optimizer", optimizer));
        var manager = new CheckpointManager(checkpoint, directory, maxToKeep: 3);

        manager.RestoreOrInitialize();   // before the model is built: values land as variables are created
        model.Build(inputSize: 4);
        using var trainer = new MlpTrainer(model.DenseLayers, optimizer, new RegressionTask(4, 1, batchSize: 64, seed: 1));
        while (optimizer.Step < totalSteps)
        {
            trainer.TrainStep();
            if (optimizer.Step % 50 == 0) manager.Save();
        }
        Console.WriteLine($"step {optimizer.Step}, latest checkpoint {manager.LatestCheckpoint}");
    // ---- (to here) ----
        return model.DenseLayers[0].Kernel!.Read<float>();
    }

    [Fact]
    public void QuickStart_RestartedRun_ContinuesFromTheSavedValuesBitExactly()
    {
        using var straight = new TempDir("readme-straight");
        using var resumed = new TempDir("readme-resumed");
        var expected = QuickStart(straight.Path, 100);       // 100 steps in one go
        QuickStart(resumed.Path, 50);                        // 50 steps, saved at step 50 …
        var actual = QuickStart(resumed.Path, 100);          // … "restart": restore on create, the remaining 50
        Assert.Equal(expected, actual);
        Assert.True(File.Exists(Path.Combine(resumed.Path, "checkpoint")));
        Assert.True(File.Exists(Path.Combine(resumed.Path, "ckpt-2.index")));
    }
}

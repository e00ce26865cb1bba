using CheckpointGpu.Devices;

namespace CheckpointGpu.Nn.TrainChild;

/// <summary>
/// The README's C# quick start with its asynchronous loop, written as a new user copies it: plain <c>using</c> (not
/// <c>await using</c>), <c>await manager.SaveAsync()</c> and nothing awaited after the loop. The process then simply ends;
/// every queued save must still be on disk (<c>Checkpoint.Dispose</c> waits for them).
/// </summary>
public static class ReadmeAsyncExample
{
    public static async Task<int> RunAsync(string directory, int steps)
    {
        // ---- README.md "Quick start in C#", first snippet (up to the loop) ----
        long totalSteps = steps;                                       // the run's length, across restarts
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

        // ---- README.md, the asynchronous loop ----
        optimizer.WriteBarrier = new CheckpointWriteBarrier(checkpoint);
        while (optimizer.Step < totalSteps)
        {
            await trainer.TrainStepAsync();
            if (optimizer.Step % 50 == 0)
            {
                var save = await manager.SaveAsync();   // plans and queues (about a millisecond here), then returns
                // save.Snapshotted: device bytes no longer needed; save.Completion: durable, state file written, old ones pruned
            }
        }
        return 0;
    }
}

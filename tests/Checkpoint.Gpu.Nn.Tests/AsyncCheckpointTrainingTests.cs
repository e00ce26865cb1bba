using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Nn.Tests;

/// <summary>
/// Async = sync: a training loop that queues a checkpoint after every step and keeps training at once (the optimizer waits
/// only at its per-variable write barriers) writes checkpoints byte-identical to a loop that saves synchronously.
/// </summary>
public sealed class AsyncCheckpointTrainingTests
{
    private const int Steps = 8;

    [Theory]
    [InlineData(SnapshotPolicy.BoundedRing)]
    [InlineData(SnapshotPolicy.WriteBarriers)]
    [InlineData(SnapshotPolicy.FullHostSnapshot)]
    public async Task SaveAsyncEveryStep_WithWriteBarriers_MatchesSynchronousSavesByteForByte(SnapshotPolicy policy)
    {
        using var syncDir = new TempDir("train-sync");
        using var asyncDir = new TempDir("train-async");
        using (var device = Accelerator.Create(AcceleratorKind.Cpu))
        {
            var (model, optimizer, trainer) = Build(device);
            using var _ = trainer;
            using var checkpoint = new Checkpoint(("model", model), ("optimizer", optimizer));
            var manager = new CheckpointManager(checkpoint, syncDir.Path, maxToKeep: null);
            for (var i = 0; i < Steps; i++)
            {
                trainer.TrainStep();
                manager.Save();
            }
        }

        using (var device = Accelerator.Create(AcceleratorKind.Cpu))
        {
            var (model, optimizer, trainer) = Build(device);
            using var _ = trainer;
            await using var pipeline = new CheckpointPipeline(device, new CheckpointPipelineOptions { SnapshotPolicy = policy });
            await using var checkpoint = new Checkpoint(("model", model), ("optimizer", optimizer));
            optimizer.WriteBarrier = new CheckpointWriteBarrier(checkpoint);
            var manager = new CheckpointManager(checkpoint, asyncDir.Path, maxToKeep: null);
            var options = new CheckpointOptions { Pipeline = pipeline };
            var handles = new List<SaveHandle>();
            for (var i = 0; i < Steps; i++)
            {
                await trainer.TrainStepAsync();
                handles.Add((await manager.SaveAsync(options: options))!);   // queued; training continues at once
            }
            await Task.WhenAll(handles.Select(h => h.Completion));
        }

        for (var n = 1; n <= Steps; n++)
        {
            var expected = Path.Combine(syncDir.Path, $"ckpt-{n}");
            var actual = Path.Combine(asyncDir.Path, $"ckpt-{n}");
            Assert.Equal(File.ReadAllBytes(expected + ".index"), File.ReadAllBytes(actual + ".index"));
            Assert.Equal(File.ReadAllBytes(BundleNaming.DataFile(expected, 0, 1)), File.ReadAllBytes(BundleNaming.DataFile(actual, 0, 1)));
        }
        Assert.Equal(Path.Combine(asyncDir.Path, $"ckpt-{Steps}"), CheckpointStateFile.LatestCheckpoint(asyncDir.Path));
    }

    private static (Sequential Model, Adam Optimizer, MlpTrainer Trainer) Build(Accelerator device)
    {
        var model = Mlp.CreateSequential(device, inputSize: 6, hiddenUnits: [64, 64], outputSize: 1, Activation.Tanh, seed: 11);
        var optimizer = new Adam(device, learningRate: 0.01f);
        var trainer = new MlpTrainer(model.DenseLayers, optimizer, new RegressionTask(6, 1, batchSize: 32, seed: 5));
        return (model, optimizer, trainer);
    }
}

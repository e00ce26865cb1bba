using CheckpointGpu.TestSupport;
using CheckpointGpu.Format;
using CheckpointGpu.Devices;
using CheckpointGpu.Pipeline;

namespace CheckpointGpu.Nn.TrainChild;

/// <summary>
/// Queues an asynchronous save and returns from <c>Main</c> without disposing anything, so only the library's
/// process-exit hook stands between the save and the end of the process. <c>slow</c>: writes are slow but finish (the
/// hook waits); <c>hung</c>: writes never finish and <see cref="CheckpointPipeline.ProcessExitTimeout"/> is 1 s (the hook
/// reports what was not written and lets the process end).
/// </summary>
public static class ExitWithPendingSaves
{
    public static async Task<int> RunAsync(string directory, string mode)
    {
        var device = Accelerator.Create(AcceleratorKind.Cpu);
        var model = Mlp.CreateSequential(device, 5, [64, 64], 1, Activation.Tanh, 3);
        var checkpoint = new Checkpoint(("model", model)) { Log = null };
        var storage = new FaultInjectingShardStorage(LocalShardStorage.Instance);
        if (mode == "hung")
        {
            storage.BlockWriteWhen = _ => true;
            CheckpointPipeline.ProcessExitTimeout = TimeSpan.FromSeconds(1);
        }
        else
        {
            storage.WriteDelay = TimeSpan.FromMilliseconds(100);
        }
        var pipeline = new CheckpointPipeline(device, new CheckpointPipelineOptions { UseDirectIO = false, SlotSizeInBytes = 4096, SlotCount = 2, Storage = storage });
        var manager = new CheckpointManager(checkpoint, directory, maxToKeep: 3);
        var handle = await manager.SaveAsync(options: new CheckpointOptions { Pipeline = pipeline });
        Console.Out.WriteLine($"queued {handle!.CheckpointPrefix} done={handle.Completion.IsCompleted}");
        return 0;   // no Dispose, no await: the process-exit hook decides
    }
}

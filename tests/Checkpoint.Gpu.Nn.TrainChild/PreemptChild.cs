using System.Globalization;
using CheckpointGpu.Devices;

namespace CheckpointGpu.Nn.TrainChild;

/// <summary>
/// A training job armed for preemption: resumes from <c>directory</c> (restore-on-create), trains forever with an
/// asynchronous save every <c>every</c> steps and calls <see cref="CheckpointManager.SaveIfPreemptedAsync"/> at each step
/// boundary. Prints <c>resumed &lt;step&gt;</c> once, <c>started</c> after its first step, and — from the signal thread —
/// <c>signal-step &lt;n&gt;</c> with the steps completed when SIGTERM arrived; then exits 42 once the final checkpoint is durable.
/// </summary>
public static class PreemptChild
{
    /// <param name="directory">Checkpoint directory (resumed from).</param>
    /// <param name="every">Save every this many steps.</param>
    /// <param name="stuck">When true the loop never reaches <see cref="CheckpointManager.SaveIfPreemptedAsync"/> (a step that
    /// hangs): the 2 s deadline must end the process with code 43.</param>
    public static async Task<int> RunAsync(string directory, int every, bool stuck = false)
    {
        using var device = Accelerator.Create(AcceleratorKind.Cpu);
        var model = Mlp.CreateSequential(device, 5, [16, 16], 1, Activation.Tanh, 7, KerasNaming.Keras2, build: false);
        var optimizer = new Adam(device, learningRate: 0.01f);
        using var checkpoint = new Checkpoint(("model", model), ("optimizer", optimizer)) { Log = null };
        using var manager = new CheckpointManager(checkpoint, directory, maxToKeep: 3);
        manager.RestoreOrInitialize();
        model.Build(5);
        using var trainer = new MlpTrainer(model.DenseLayers, optimizer, new RegressionTask(5, 1, 32, 7));
        optimizer.WriteBarrier = new CheckpointWriteBarrier(checkpoint);
        long completed = optimizer.Iterations.Read<long>()[0];
        Console.Out.WriteLine($"resumed {completed.ToString(CultureInfo.InvariantCulture)}");
        manager.PreemptionSignalled += _ =>
        {
            Console.Out.WriteLine($"signal-step {Interlocked.Read(ref completed).ToString(CultureInfo.InvariantCulture)}");
            Console.Out.Flush();
        };
        manager.ArmPreemption(stuck ? new PreemptionOptions { Deadline = TimeSpan.FromSeconds(2) } : null);
        var first = true;
        while (true)
        {
            await trainer.TrainStepAsync();
            var step = Interlocked.Increment(ref completed);
            if (first)
            {
                first = false;
                Console.Out.WriteLine("started");
                Console.Out.Flush();
            }
            if (step % every == 0) await manager.SaveAsync();
            if (!stuck) await manager.SaveIfPreemptedAsync();   // exits 42 after a durable final checkpoint
        }
    }
}

using System.Diagnostics;
using CheckpointGpu.Devices;
using CheckpointGpu.Nn;

namespace CheckpointGpu.Cli.Demo;

/// <summary>What one run of the demo's training loop measured.</summary>
internal sealed record DemoRunResult(long FirstStep, IReadOnlyList<float> Losses, int CheckpointsWritten, long BytesWritten,
    TimeSpan SaveTime, TimeSpan MaxBlocked, string? LastCheckpoint, string? RestoredFrom, uint FinalWeightsCrc);

/// <summary>Settings shared by every phase of <c>ckpt demo</c>.</summary>
internal sealed record DemoSettings(AcceleratorKind Device, int Steps, int Every, int Hidden, int MaxToKeep = 3)
{
    public const int InputSize = 8;
    public const int BatchSize = 64;
    public const ulong Seed = 2026;

    /// <summary>Parameters of the MLP 8 → hidden → hidden → 1 (weights and biases).</summary>
    public long ParameterCount => (long)InputSize * Hidden + Hidden + (long)Hidden * Hidden + Hidden + Hidden + 1;

    /// <summary>Two equal hidden layers giving about <paramref name="parameters"/> weights.</summary>
    public static int HiddenFor(long parameters) =>
        Math.Max(4, (int)((-(InputSize + 3) + Math.Sqrt((InputSize + 3.0) * (InputSize + 3) + 4.0 * Math.Max(parameters, 1))) / 2));
}

/// <summary>
/// The demo's training job: an MLP regression on deterministically generated data, trained with Adam, checkpointed
/// by a <see cref="CheckpointManager"/> every <see cref="DemoSettings.Every"/> steps. A run first calls
/// <see cref="CheckpointManager.RestoreOrInitialize"/> — before the model exists — so a restarted process resumes
/// from the latest checkpoint by restore-on-create (Adam's slots included, created at the first step).
/// </summary>
internal static class DemoTraining
{
    /// <summary>Trains until the optimizer's iteration count reaches <paramref name="stopAtStep"/>.</summary>
    /// <param name="settings">Model size, device, schedule.</param>
    /// <param name="directory">The CheckpointManager's directory (resumed from when it holds a checkpoint).</param>
    /// <param name="stopAtStep">Last step to train (1-based); a resumed run starts after its restored step.</param>
    /// <param name="onStep">Called after every step with (step, loss, last checkpoint, last save GB/s, last blocked time).</param>
    public static DemoRunResult Run(DemoSettings settings, string directory, int stopAtStep, Action<long, float, string?, double, TimeSpan>? onStep)
    {
        using var device = Accelerator.Create(settings.Device);
        var model = new Sequential();
        model.Add(new Dense(device, settings.Hidden, Activation.Tanh, seed: DemoSettings.Seed));
        model.Add(new Dense(device, settings.Hidden, Activation.Tanh, seed: DemoSettings.Seed + 1));
        model.Add(new Dense(device, 1, seed: DemoSettings.Seed + 2));
        var optimizer = new Adam(device, learningRate: 0.002f);
        using var checkpoint = new Checkpoint(("model", model), ("optimizer", optimizer));
        var manager = new CheckpointManager(checkpoint, directory, maxToKeep: settings.MaxToKeep);

        var restoredFrom = manager.RestoreOrInitialize();   // before Build: restore-on-create
        model.Build(DemoSettings.InputSize);
        using var trainer = new MlpTrainer(model.DenseLayers, optimizer,
            new RegressionTask(DemoSettings.InputSize, 1, DemoSettings.BatchSize, DemoSettings.Seed));

        var firstStep = optimizer.Iterations.Read<long>()[0] + 1;
        var losses = new List<float>();
        var saves = 0;
        var bytes = 0L;
        var saveTime = TimeSpan.Zero;
        var maxBlocked = TimeSpan.Zero;
        string? last = restoredFrom;
        var lastGbps = 0.0;
        var lastBlocked = TimeSpan.Zero;
        for (var step = firstStep; step <= stopAtStep; step++)
        {
            losses.Add(trainer.TrainStep());
            if (step % settings.Every == 0)
            {
                var clock = Stopwatch.StartNew();
                last = manager.Save();
                lastBlocked = clock.Elapsed;
                var written = CheckpointBytes(last!);
                saves++;
                bytes += written;
                saveTime += lastBlocked;
                maxBlocked = lastBlocked > maxBlocked ? lastBlocked : maxBlocked;
                lastGbps = written / 1e9 / Math.Max(lastBlocked.TotalSeconds, 1e-9);
            }
            onStep?.Invoke(step, losses[^1], last, lastGbps, lastBlocked);
        }

        var crc = 0u;
        foreach (var layer in model.DenseLayers)
        {
            crc = Format.MaskedCrc32C.Extend(crc, layer.Kernel!.ReadBytes());
            crc = Format.MaskedCrc32C.Extend(crc, layer.Bias!.ReadBytes());
        }
        return new DemoRunResult(firstStep, losses, saves, bytes, saveTime, maxBlocked, last, restoredFrom, crc);
    }

    private static long CheckpointBytes(string prefix)
    {
        var dir = Path.GetDirectoryName(prefix)!;
        var name = Path.GetFileName(prefix);
        return Directory.EnumerateFiles(dir, name + ".*").Sum(f => new FileInfo(f).Length);
    }
}

using System.Diagnostics;
using CheckpointGpu.Devices;
using CheckpointGpu.Distributed;
using CheckpointGpu.Nn;

namespace CheckpointGpu.Cli.Demo;

/// <summary>What one run of the demo's training loop measured.</summary>
/// <param name="FirstStep">First step trained by this run (after a restored checkpoint's step).</param>
/// <param name="Losses">Loss of every step trained, in order.</param>
/// <param name="CheckpointsWritten">Checkpoints saved by this run.</param>
/// <param name="BytesWritten">Bytes of those checkpoints' files.</param>
/// <param name="SaveTime">Sum over checkpoints of the time from queuing to durable (saves overlap with training).</param>
/// <param name="MedianBlocked">Median time the loop was held by one save call (planning and queuing; the first call also allocates the staging ring).</param>
/// <param name="FirstBlocked">Time the loop was held by the first save call, which allocates and pre-faults the staging ring.</param>
/// <param name="LastCheckpoint">Newest durable checkpoint, if any.</param>
/// <param name="RestoredFrom">Checkpoint the run resumed from, or null for a fresh start.</param>
/// <param name="FinalWeightsCrc">CRC32C over every layer's kernel and bias bytes after the last step.</param>
/// <param name="RestoredFromDataFiles">Data files of <paramref name="RestoredFrom"/>, read when it was restored (it may be pruned by the end), or 0.</param>
internal sealed record DemoRunResult(long FirstStep, IReadOnlyList<float> Losses, int CheckpointsWritten, long BytesWritten,
    TimeSpan SaveTime, TimeSpan MedianBlocked, TimeSpan FirstBlocked, string? LastCheckpoint, string? RestoredFrom, uint FinalWeightsCrc,
    int RestoredFromDataFiles);

/// <summary>Settings shared by every phase of <c>ckpt demo</c>.</summary>
internal sealed record DemoSettings(AcceleratorKind Device, int Steps, int Every, int Hidden, int MaxToKeep = 3)
{
    /// <summary>Replica processes of the crashed and resumed runs (1 = a single process, no multi-worker saves).</summary>
    public int Workers { get; init; } = 1;

    /// <summary>How the replicas are started and coordinate: <c>local</c> (LocalWorkerLauncher, marker files) or <c>mpi</c> (mpiexec, MPI collectives).</summary>
    public string Launcher { get; init; } = "local";

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
    /// <param name="cancellationToken">Stops training.</param>
    /// <param name="worker">
    /// When set, this process is one replica of a multi-worker job (every replica trains the same deterministic steps,
    /// standing in for data-parallel replicas kept identical by an all-reduce): saves are multi-worker saves whose
    /// tensors are spread over the replicas by <see cref="BalancedOwnership"/>, merged by the chief into one checkpoint.
    /// </param>
    /// <remarks>
    /// Saves are asynchronous (<see cref="CheckpointManager.SaveAsync"/>): the loop blocks only while a save is planned and
    /// queued, and at the optimizer's per-variable write barriers (<see cref="CheckpointWriteBarrier"/>) if it is about to
    /// update a variable whose bytes are not yet staged. Every queued save is awaited before returning.
    /// </remarks>
    /// <param name="preemption">When set (<c>--preempt-after</c>), the manager is armed for SIGTERM, the process signals itself
    /// after the given time, and the loop stops after writing the final checkpoint (recorded in <paramref name="preemption"/>).</param>
    public static async Task<DemoRunResult> RunAsync(DemoSettings settings, string directory, int stopAtStep,
        Action<long, float, string?, double, TimeSpan>? onStep, CancellationToken cancellationToken, WorkerContext? worker = null,
        DemoPreemption? preemption = null)
    {
        var saveOptions = worker is null ? null : new CheckpointOptions { MultiWorker = worker.With(ownership: new BalancedOwnership()) };
        using var device = Accelerator.Create(settings.Device);
        var model = new Sequential();
        model.Add(new Dense(device, settings.Hidden, Activation.Tanh, seed: DemoSettings.Seed));
        model.Add(new Dense(device, settings.Hidden, Activation.Tanh, seed: DemoSettings.Seed + 1));
        model.Add(new Dense(device, 1, seed: DemoSettings.Seed + 2));
        var optimizer = new Adam(device, learningRate: 0.002f);
        await using var checkpoint = new Checkpoint(("model", model), ("optimizer", optimizer));
        optimizer.WriteBarrier = new CheckpointWriteBarrier(checkpoint);
        using var manager = new CheckpointManager(checkpoint, directory, maxToKeep: settings.MaxToKeep);

        var restoredFrom = manager.RestoreOrInitialize();   // before Build: restore-on-create
        var restoredShards = restoredFrom is null ? 0 : Format.TensorBundleIndex.Read(restoredFrom).Header.ShardCount;
        model.Build(DemoSettings.InputSize);
        using var trainer = new MlpTrainer(model.DenseLayers, optimizer,
            new RegressionTask(DemoSettings.InputSize, 1, DemoSettings.BatchSize, DemoSettings.Seed));

        var firstStep = optimizer.Iterations.Read<long>()[0] + 1;
        var losses = new List<float>();
        var pending = new List<Task>();
        var gate = new Lock();   // completions of queued saves update these from pool threads
        var saves = 0;
        var bytes = 0L;
        var saveTime = TimeSpan.Zero;
        var blockedTimes = new List<TimeSpan>();
        string? last = restoredFrom;
        var lastGbps = 0.0;
        var lastBlocked = TimeSpan.Zero;

        async Task RecordWhenDurableAsync(Pipeline.SaveHandle handle, Stopwatch sinceQueued)
        {
            await handle.Completion.ConfigureAwait(false);   // a failed save surfaces from Task.WhenAll below
            var written = CheckpointBytes(handle.CheckpointPrefix);
            lock (gate)
            {
                bytes += written;
                saveTime += sinceQueued.Elapsed;
                last = handle.CheckpointPrefix;
                lastGbps = written / 1e9 / Math.Max(sinceQueued.Elapsed.TotalSeconds, 1e-9);
            }
        }

        using var preemptionTimer = preemption?.Arm(manager);
        for (var step = firstStep; step <= stopAtStep; step++)
        {
            losses.Add(await trainer.TrainStepAsync(cancellationToken).ConfigureAwait(false));
            if (step % settings.Every == 0)
            {
                var clock = Stopwatch.StartNew();
                var handle = (await manager.SaveAsync(options: saveOptions, cancellationToken: cancellationToken).ConfigureAwait(false))!;
                lastBlocked = clock.Elapsed;
                blockedTimes.Add(lastBlocked);
                saves++;
                pending.Add(RecordWhenDurableAsync(handle, clock));
            }
            string? lastNow;
            double gbpsNow;
            lock (gate) { lastNow = last; gbpsNow = lastGbps; }
            onStep?.Invoke(step, losses[^1], lastNow, gbpsNow, lastBlocked);
            preemption?.StepCompleted(step);
            // Step boundary: after a SIGTERM, wait for the queued saves and write the final checkpoint of this step.
            if (preemption is not null && await manager.SaveIfPreemptedAsync(saveOptions, cancellationToken).ConfigureAwait(false) is { } final)
            {
                preemption.Preempted = true;
                preemption.FinalCheckpoint = final;
                preemption.FinalCheckpointStep = step;
                lock (gate) last = final;
                break;
            }
        }
        await Task.WhenAll(pending).ConfigureAwait(false);   // surfaces the first failed save

        var crc = 0u;
        foreach (var layer in model.DenseLayers)
        {
            crc = Format.MaskedCrc32C.Extend(crc, layer.Kernel!.ReadBytes());
            crc = Format.MaskedCrc32C.Extend(crc, layer.Bias!.ReadBytes());
        }
        var sorted = blockedTimes.Order().ToArray();
        var median = sorted.Length == 0 ? TimeSpan.Zero : sorted[sorted.Length / 2];
        return new DemoRunResult(firstStep, losses, saves, bytes, saveTime, median, blockedTimes.FirstOrDefault(), last, restoredFrom, crc, restoredShards);
    }

    private static long CheckpointBytes(string prefix)
    {
        var dir = Path.GetDirectoryName(prefix)!;
        var name = Path.GetFileName(prefix);
        return Directory.EnumerateFiles(dir, name + ".*").Sum(f => new FileInfo(f).Length);
    }
}

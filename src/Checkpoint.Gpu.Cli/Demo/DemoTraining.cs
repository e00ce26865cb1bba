using System.Diagnostics;
using CheckpointGpu.Devices;
using CheckpointGpu.Distributed;
using CheckpointGpu.Data;
using CheckpointGpu.Nn;

namespace CheckpointGpu.Cli.Demo;

/// <summary>One checkpoint saved by a run: when, how long the loop was held, how long until durable, how big.</summary>
/// <param name="Step">The step it holds.</param>
/// <param name="Blocked">Time the training loop was held by the save call (planning and queuing; the first also allocates the staging ring).</param>
/// <param name="Duration">Time from the call to the checkpoint being durable (it overlaps with training).</param>
/// <param name="Bytes">Bytes of its files.</param>
internal sealed record DemoSave(long Step, TimeSpan Blocked, TimeSpan Duration, long Bytes);

/// <summary>What one run of the demo's training loop measured.</summary>
/// <param name="FirstStep">First step trained by this run (after a restored checkpoint's step).</param>
/// <param name="Losses">Loss of every step trained, in order.</param>
/// <param name="BatchCrcs">CRC32C of every step's input batch (its bytes), in order: what the data iterator yielded.</param>
/// <param name="CheckpointsWritten">Checkpoints saved by this run.</param>
/// <param name="BytesWritten">Bytes of those checkpoints' files.</param>
/// <param name="SaveTime">Sum over checkpoints of the time from queuing to durable (saves overlap with training).</param>
/// <param name="MedianBlocked">Median time the loop was held by one save call (planning and queuing; the first call also allocates the staging ring).</param>
/// <param name="FirstBlocked">Time the loop was held by the first save call, which allocates and pre-faults the staging ring.</param>
/// <param name="Saves">Every checkpoint of this run, in order.</param>
/// <param name="LastCheckpoint">Newest durable checkpoint, if any.</param>
/// <param name="RestoredFrom">Checkpoint the run resumed from, or null for a fresh start.</param>
/// <param name="FinalWeightsCrc">CRC32C over every model variable's bytes (embedding, kernels, biases) after the last step.</param>
/// <param name="RestoredFromDataFiles">Data files of <paramref name="RestoredFrom"/>, read when it was restored (it may be pruned by the end), or 0.</param>
/// <param name="Dataset">What was trained on (a path, or the SDK docs' folder and pattern).</param>
internal sealed record DemoRunResult(long FirstStep, IReadOnlyList<float> Losses, IReadOnlyList<uint> BatchCrcs, int CheckpointsWritten, long BytesWritten,
    TimeSpan SaveTime, TimeSpan MedianBlocked, TimeSpan FirstBlocked, IReadOnlyList<DemoSave> Saves, string? LastCheckpoint, string? RestoredFrom,
    uint FinalWeightsCrc, int RestoredFromDataFiles, string Dataset);

/// <summary>Settings shared by every phase of <c>ckpt demo</c>.</summary>
internal sealed record DemoSettings(AcceleratorKind Device, int Steps, int Every, int Hidden, int MaxToKeep = 3)
{
    /// <summary>Replica processes of the crashed and resumed runs (1 = a single process, no multi-worker saves).</summary>
    public int Workers { get; init; } = 1;

    /// <summary>How the replicas are started and coordinate: <c>local</c> (LocalWorkerLauncher, marker files) or <c>mpi</c> (mpiexec, MPI collectives).</summary>
    public string Launcher { get; init; } = "local";

    /// <summary>The text to train on (<c>--data</c>); <see langword="null"/> for the SDK's reference XML docs.</summary>
    public string? DataPath { get; init; }

    /// <summary>Bytes of context the model sees.</summary>
    public const int ContextLength = 32;

    /// <summary>Embedding size per byte.</summary>
    public const int EmbeddingSize = 16;

    /// <summary>Byte values: rows of the embedding and logits of the output layer.</summary>
    public const int Vocabulary = 256;

    public const int BatchSize = 64;
    public const int ShuffleBufferSize = 4096;
    public const ulong Seed = 2026;

    /// <summary>Parameters of embedding 256×16 → (32·16) → hidden → hidden → 256 (weights and biases).</summary>
    public long ParameterCount => ParametersFor(Hidden);

    private static long ParametersFor(long h) =>
        (long)Vocabulary * EmbeddingSize + (long)ContextLength * EmbeddingSize * h + h + h * h + h + h * Vocabulary + Vocabulary;

    /// <summary>Two equal hidden layers giving about <paramref name="parameters"/> weights (at least 4 units).</summary>
    public static int HiddenFor(long parameters)
    {
        // h² + (C·E + 258) h + (256·E + 256) = P
        double b = ContextLength * EmbeddingSize + 2 + Vocabulary, c = Vocabulary * EmbeddingSize + Vocabulary - Math.Max(parameters, 1);
        return (int)Math.Clamp((-b + Math.Sqrt(b * b - 4 * c)) / 2, 4, 1 << 20);
    }
}

/// <summary>
/// The demo's training job: a byte-level language model (embedding of a 32-byte context → two tanh dense layers →
/// 256 logits, softmax cross-entropy) trained with Adam on real text read through a trackable
/// <see cref="DatasetIterator"/>, checkpointed by a <see cref="CheckpointManager"/> every <see cref="DemoSettings.Every"/>
/// steps. The checkpoint tracks the model, the optimizer and the iterator. A run first calls
/// <see cref="CheckpointManager.RestoreOrInitialize"/> — before the model exists — so a restarted process resumes from
/// the latest checkpoint by restore-on-create (Adam's slots included, created at the first step) and its iterator
/// continues with exactly the batch the uninterrupted run saw next.
/// </summary>
internal static class DemoTraining
{
    /// <summary>Opens the demo's dataset: <paramref name="dataPath"/>, or the SDK's reference XML docs.</summary>
    /// <returns>The dataset and a description for the summary (a path).</returns>
    /// <exception cref="FileNotFoundException">The file, or any SDK docs, is missing.</exception>
    /// <exception cref="DatasetException">The file is empty or shorter than one sequence.</exception>
    public static (SequenceDataset Dataset, string Name) OpenDataset(string? dataPath)
    {
        if (dataPath is not null)
        {
            var full = Path.GetFullPath(dataPath);
            if (Directory.Exists(full)) throw new CliException($"{full}: --data takes a file, not a directory.", ExitCodes.UsageOrUnsupported);
            return (SequenceDataset.Open([full], DemoSettings.ContextLength + 1), full);
        }
        var files = SdkReferenceDocs.FindXmlFiles();
        return (SequenceDataset.Open(files, DemoSettings.ContextLength + 1), Path.Combine(Path.GetDirectoryName(files[0])!, "*.xml"));
    }

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
        var (dataset, datasetName) = OpenDataset(settings.DataPath);
        using var datasetScope = dataset;
        var iterator = new DatasetIterator(dataset, DemoSettings.BatchSize, DemoSettings.ShuffleBufferSize, DemoSettings.Seed);
        using var device = Accelerator.Create(settings.Device);
        var model = new Sequential("byte_lm");
        var embedding = new Embedding(device, DemoSettings.Vocabulary, DemoSettings.EmbeddingSize, seed: DemoSettings.Seed);
        model.Add(embedding);
        model.Add(new Dense(device, settings.Hidden, Activation.Tanh, seed: DemoSettings.Seed + 1));
        model.Add(new Dense(device, settings.Hidden, Activation.Tanh, seed: DemoSettings.Seed + 2));
        model.Add(new Dense(device, DemoSettings.Vocabulary, seed: DemoSettings.Seed + 3));
        var optimizer = new Adam(device, learningRate: 0.002f);
        await using var checkpoint = new Checkpoint(("model", model), ("optimizer", optimizer), ("iterator", iterator));
        optimizer.WriteBarrier = new CheckpointWriteBarrier(checkpoint);
        using var manager = new CheckpointManager(checkpoint, directory, maxToKeep: settings.MaxToKeep);

        var restoredFrom = manager.RestoreOrInitialize();   // before Build: restore-on-create; the iterator is restored at once
        var restoredShards = restoredFrom is null ? 0 : Format.TensorBundleIndex.Read(restoredFrom).Header.ShardCount;
        embedding.Build();
        model.Build(DemoSettings.ContextLength * DemoSettings.EmbeddingSize);
        using var trainer = new ByteLanguageModelTrainer(embedding, model.DenseLayers, optimizer, DemoSettings.BatchSize, DemoSettings.ContextLength);

        var firstStep = optimizer.Iterations.Read<long>()[0] + 1;
        if (iterator.BatchesProduced != firstStep - 1)
            throw new CliException($"{restoredFrom}: the iterator has produced {iterator.BatchesProduced} batches but the optimizer is at step {firstStep - 1}.", ExitCodes.DataProblem);
        var losses = new List<float>();
        var batchCrcs = new List<uint>();
        var pending = new List<Task>();
        var gate = new Lock();   // completions of queued saves update these from pool threads
        var saves = new List<DemoSave>();
        var bytes = 0L;
        var saveTime = TimeSpan.Zero;
        var blockedTimes = new List<TimeSpan>();
        string? last = restoredFrom;
        var lastGbps = 0.0;
        var lastBlocked = TimeSpan.Zero;

        async Task RecordWhenDurableAsync(Pipeline.SaveHandle handle, Stopwatch sinceQueued, long step, TimeSpan blocked)
        {
            await handle.Completion.ConfigureAwait(false);   // a failed save surfaces from Task.WhenAll below
            var duration = sinceQueued.Elapsed;
            var written = CheckpointBytes(handle.CheckpointPrefix);
            lock (gate)
            {
                bytes += written;
                saveTime += duration;
                saves.Add(new DemoSave(step, blocked, duration, written));
                last = handle.CheckpointPrefix;
                lastGbps = written / 1e9 / Math.Max(duration.TotalSeconds, 1e-9);
            }
        }

        using var preemptionTimer = preemption?.Arm(manager);
        for (var step = firstStep; step <= stopAtStep; step++)
        {
            var batch = iterator.GetNext();
            batchCrcs.Add(Format.MaskedCrc32C.Extend(0, batch.Data));
            losses.Add(await trainer.TrainStepAsync(batch.Data, cancellationToken).ConfigureAwait(false));
            if (step % settings.Every == 0)
            {
                var clock = Stopwatch.StartNew();
                // The iterator's state is captured here, between GetNext calls, with the model's and optimizer's.
                var handle = (await manager.SaveAsync(options: saveOptions, cancellationToken: cancellationToken).ConfigureAwait(false))!;
                lastBlocked = clock.Elapsed;
                blockedTimes.Add(lastBlocked);
                pending.Add(RecordWhenDurableAsync(handle, clock, step, lastBlocked));
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
        foreach (var variable in model.Variables) crc = Format.MaskedCrc32C.Extend(crc, variable.ReadBytes());
        var sorted = blockedTimes.Order().ToArray();
        var median = sorted.Length == 0 ? TimeSpan.Zero : sorted[sorted.Length / 2];
        var orderedSaves = saves.OrderBy(x => x.Step).ToArray();
        return new DemoRunResult(firstStep, losses, batchCrcs, orderedSaves.Length, bytes, saveTime, median, blockedTimes.FirstOrDefault(),
            orderedSaves, last, restoredFrom, crc, restoredShards, datasetName);
    }

    private static long CheckpointBytes(string prefix)
    {
        var dir = Path.GetDirectoryName(prefix)!;
        var name = Path.GetFileName(prefix);
        return Directory.EnumerateFiles(dir, name + ".*").Sum(f => new FileInfo(f).Length);
    }
}

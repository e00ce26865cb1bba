using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using CheckpointGpu.Cli.Demo;
using CheckpointGpu.Cli.Output;
using CheckpointGpu.Devices;
using CheckpointGpu.Distributed;
using Spectre.Console;

namespace CheckpointGpu.Cli.Commands;

/// <summary>
/// <c>ckpt demo</c>: the main job. Trains a small byte-level language model with Adam on real text (the SDK's reference
/// XML docs, or <c>--data</c>) read through a trackable data iterator, on an accelerator, while a CheckpointManager saves
/// every K steps; then a fresh process is "killed" mid-run and another fresh process resumes from the latest checkpoint by
/// restore-on-create; the resumed batches, losses and final weights must equal the uninterrupted run's bit for bit. With <c>--workers N</c> the
/// crashed and resumed runs are N replica processes started by <see cref="LocalWorkerLauncher"/> whose checkpoints are
/// multi-worker saves (each replica writes its share, the chief merges), and every replica must agree.
/// </summary>
internal static class DemoCommand
{
    private sealed record ChildReport(long FirstStep, uint[] LossBits, uint[] BatchCrcs, uint FinalWeightsCrc, string? RestoredFrom, int CheckpointsWritten, int RestoredFromDataFiles);

    public static Command Create()
    {
        var device = DeviceNames.CreateOption("Accelerator");
        var dir = new Option<string?>("--dir") { Description = "Directory for the checkpoints (default: a new folder under the system temp directory)." };
        var steps = new Option<int>("--steps") { Description = "Training steps.", DefaultValueFactory = _ => 500 };
        var every = new Option<int>("--every") { Description = "Save a checkpoint every K steps.", DefaultValueFactory = _ => 50 };
        var parameters = new Option<long>("--params") { Description = "Approximate number of model parameters (weights; the two hidden layers grow with it); Adam adds two slots per weight, so a checkpoint is about 12 bytes per parameter.", DefaultValueFactory = _ => DefaultParameters };
        var data = new Option<string?>("--data") { Description = "Train on this file's bytes instead of the .NET SDK's reference XML documentation (found under the dotnet root at run time)." };
        var phase = new Option<string?>("--phase") { Hidden = true };
        var stopAt = new Option<int>("--stop-at") { Hidden = true };
        var json = new Option<bool>("--json") { Description = "Print the summary as one JSON document on standard output (progress goes to standard error)." };
        var plot = new Option<string?>("--plot") { Description = "Also draw the loss curves (uninterrupted and resumed overlaid, checkpoints and the crash marked) to this PNG file." };
        var preemptAfter = new Option<double?>("--preempt-after") { Description = "Preemption demo: arm the CheckpointManager for SIGTERM, send this process SIGTERM after SECONDS of training, write a final checkpoint at the next step boundary and exit with code 42 (TF's restart code)." };
        var workers = new Option<int>("--workers") { Description = "Run the crashed and resumed jobs as N replica processes (1-8) whose checkpoints are multi-worker saves merged by the chief.", DefaultValueFactory = _ => 1 };
        var launcher = new Option<string>("--launcher") { Description = "With --workers: 'local' starts the replicas itself and they coordinate through marker files; 'mpi' runs them under MPICH's mpiexec, coordinating by MPI collectives.", DefaultValueFactory = _ => "local" };
        launcher.AcceptOnlyFromAmong("local", "mpi");
        var command = new Command("demo", """
            The main job: train a byte-level language model (embedding of a 32-byte context, two dense layers, softmax
            over 256 byte values) with Adam on real text -- the .NET SDK's reference XML documentation, or --data FILE --
            read through a trackable, shuffling data iterator; checkpoint model, optimizer and iterator with a
            CheckpointManager (max_to_keep 3) every K steps; then simulate a crash and a restart in fresh processes that
            call RestoreOrInitialize before the model exists, and check that the resumed batches, loss curve and final
            weights equal the uninterrupted run's bit for bit. Exit code 0 when they do, 1 when they do not.

            Examples:
              ckpt demo
              ckpt demo --device opencl --steps 400 --every 50 --params 1000000 --dir /tmp/demo
              ckpt demo --params 30000000 --steps 6 --every 2 --data corpus.txt
              ckpt demo --workers 3
              ckpt demo --steps 100000 --preempt-after 5 --json
              ckpt demo --launcher mpi --workers 4
            """) { device, dir, steps, every, parameters, data, phase, stopAt, json, workers, plot, preemptAfter, launcher };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var kind = DeviceNames.Parse(parse.GetValue(device)!);
            var n = parse.GetValue(steps);
            var k = parse.GetValue(every);
            if (n < 2 || k < 1 || k >= n) throw new CliException("--steps must be at least 2 and --every between 1 and steps - 1.", ExitCodes.UsageOrUnsupported);
            if (parse.GetValue(workers) is < 1 or > 8) throw new CliException("--workers must be between 1 and 8.", ExitCodes.UsageOrUnsupported);
            var settings = new DemoSettings(kind, n, k, DemoSettings.HiddenFor(parse.GetValue(parameters))) { Workers = parse.GetValue(workers), Launcher = parse.GetValue(launcher)!, DataPath = parse.GetValue(data) };
            if (parse.GetValue(preemptAfter) is { } seconds)
                return await RunPreemptedAsync(settings, parse.GetValue(dir), TimeSpan.FromSeconds(seconds), Console.Out, parse.GetValue(json), cancellationToken);
            return parse.GetValue(phase) is { } childPhase
                ? await RunChildAsync(settings, parse.GetValue(dir)!, parse.GetValue(stopAt), childPhase, Console.Out, cancellationToken)
                : await RunAsync(settings, parse.GetValue(dir), Console.Out, parse.GetValue(json), cancellationToken, parse.GetValue(plot));
        });
        return command;
    }

    /// <summary>Default <c>--params</c>: hidden layers of 128 units, about a minute for the whole demo on 2 CPU cores.</summary>
    internal const long DefaultParameters = 120_000;

    internal static async Task<int> RunAsync(DemoSettings settings, string? directory, TextWriter output, bool json, CancellationToken cancellationToken,
        string? plotPath = null)
    {
        // With --json, standard output carries only the JSON document; the narrative goes to standard error.
        var log = json ? Console.Error : output;
        DeviceNames.RequireSupported(settings.Device);
        // Open the data first (and make one iterator over it), so a missing, empty or too short file fails, naming it,
        // before any directory is created.
        var (probe, datasetName) = DemoTraining.OpenDataset(settings.DataPath);
        string dataLine;
        using (probe)
        {
            _ = new Data.DatasetIterator(probe, DemoSettings.BatchSize, DemoSettings.ShuffleBufferSize, DemoSettings.Seed);
            dataLine = string.Create(CultureInfo.InvariantCulture,
                $"data           {datasetName}: {probe.Files.Count} file(s), {probe.TotalBytes / 1e6:F1} MB, {probe.SequenceCount:N0} sequences of {probe.SequenceLength} bytes in {probe.ShardCount} shards, shuffled, batches of {DemoSettings.BatchSize}");
        }
        var root = Path.GetFullPath(directory ?? Path.Combine(Path.GetTempPath(), $"ckpt-demo-{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Environment.ProcessId}"));
        var uninterruptedDir = Path.Combine(root, "uninterrupted");
        var restartedDir = Path.Combine(root, "restarted");
        foreach (var d in new[] { uninterruptedDir, restartedDir })
        {
            if (Directory.Exists(d) && Directory.EnumerateFileSystemEntries(d).Any())
                throw new CliException($"{d}: not empty; give --dir a new or empty directory.", ExitCodes.UsageOrUnsupported);
            Directory.CreateDirectory(d);
        }

        log.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"training a byte-level language model: {DemoSettings.ContextLength}-byte context → embedding {DemoSettings.Vocabulary}×{DemoSettings.EmbeddingSize} → {settings.Hidden} → {settings.Hidden} → softmax over {DemoSettings.Vocabulary} bytes ({settings.ParameterCount:N0} parameters, Adam) on {settings.Device}"));
        log.WriteLine(dataLine);
        log.WriteLine($"schedule       {settings.Steps} steps, checkpoint every {settings.Every} (model, Adam slots and the data iterator's position)");
        log.WriteLine($"checkpoints in {root}");

        var clock = Stopwatch.StartNew();
        var straight = await TrainWithProgressAsync(settings, uninterruptedDir, log, cancellationToken);
        var trainSeconds = clock.Elapsed.TotalSeconds;

        // Crash mid-interval, so the restart must also redo the steps after the last checkpoint.
        var crashAt = Math.Clamp(settings.Steps * 3 / 5 + settings.Every / 2, settings.Every, settings.Steps - 1);
        log.WriteLine(settings.Workers > 1
            ? $"simulating a crash: {settings.Workers} fresh replica processes train in {restartedDir} and stop at step {crashAt} without saving …"
            : $"simulating a crash: a fresh process trains in {restartedDir} and stops at step {crashAt} without saving …");
        var coordination = Path.Combine(root, "coordination");
        var interruptedAll = await SpawnAsync(settings, restartedDir, coordination, crashAt, "interrupted", cancellationToken);
        log.WriteLine(settings.Workers > 1
            ? $"restarting: {settings.Workers} other fresh processes call RestoreOrInitialize before building the model …"
            : "restarting: another fresh process calls RestoreOrInitialize before building the model …");
        var resumedAll = await SpawnAsync(settings, restartedDir, coordination, settings.Steps, "resume", cancellationToken);
        // The workers' coordination directory is empty once they are done: leave no empty folder behind.
        if (Directory.Exists(coordination) && !Directory.EnumerateFileSystemEntries(coordination).Any()) Directory.Delete(coordination);
        var (interrupted, resumed) = (interruptedAll[0], resumedAll[0]);
        // Replicas: every worker's report (losses, final weights, checkpoint resumed from) equals the chief's.
        static bool SameRun(ChildReport a, ChildReport b) =>
            a.FirstStep == b.FirstStep && a.LossBits.SequenceEqual(b.LossBits) && a.BatchCrcs.SequenceEqual(b.BatchCrcs) && a.FinalWeightsCrc == b.FinalWeightsCrc && a.RestoredFrom == b.RestoredFrom;
        var replicasAgree = interruptedAll.All(r => SameRun(r, interrupted)) && resumedAll.All(r => SameRun(r, resumed));
        var resumedShards = resumed.RestoredFromDataFiles;

        var mismatches = 0;
        var batchMismatches = 0;
        for (var i = 0; i < resumed.LossBits.Length; i++)
        {
            var step = resumed.FirstStep + i;
            if (BitConverter.SingleToUInt32Bits(straight.Losses[(int)(step - straight.FirstStep)]) != resumed.LossBits[i]) mismatches++;
            if (straight.BatchCrcs[(int)(step - straight.FirstStep)] != resumed.BatchCrcs[i]) batchMismatches++;
        }
        // The crashed run, too, must have seen the uninterrupted run's first batches.
        for (var i = 0; i < interrupted.BatchCrcs.Length; i++)
            if (straight.BatchCrcs[(int)(interrupted.FirstStep + i - straight.FirstStep)] != interrupted.BatchCrcs[i]) batchMismatches++;
        var batchesEqual = batchMismatches == 0 && resumed.BatchCrcs.Length == resumed.LossBits.Length && resumed.BatchCrcs.Length > 0;
        var weightsEqual = straight.FinalWeightsCrc == resumed.FinalWeightsCrc;
        var ok = mismatches == 0 && weightsEqual && batchesEqual && resumed.RestoredFrom is not null && replicasAgree
            && (settings.Workers == 1 || resumedShards == settings.Workers);

        if (plotPath is not null)
        {
            static float[] Losses(uint[] bits) => bits.Select(BitConverter.UInt32BitsToSingle).ToArray();
            Plots.DemoPlot.Render((straight.FirstStep, straight.Losses.ToArray()), (interrupted.FirstStep, Losses(interrupted.LossBits)),
                (resumed.FirstStep, Losses(resumed.LossBits)), Enumerable.Range(1, settings.Steps / settings.Every).Select(i => (long)i * settings.Every).ToArray(),
                crashAt, plotPath);
            log.WriteLine($"plot           {Path.GetFullPath(plotPath)}");
        }

        if (json)
        {
            JsonOutput.Write(output, w =>
            {
                w.WriteBoolean("ok", ok);
                w.WriteString("device", DeviceNames.Name(settings.Device));
                w.WriteNumber("parameters", settings.ParameterCount);
                w.WriteNumber("steps", settings.Steps);
                w.WriteNumber("every", settings.Every);
                w.WriteString("directory", root);
                w.WriteNumber("checkpoints_written", straight.CheckpointsWritten);
                w.WriteNumber("bytes_written", straight.BytesWritten);
                w.WriteNumber("save_gbps", Math.Round(straight.BytesWritten / 1e9 / Math.Max(straight.SaveTime.TotalSeconds, 1e-9), 4));
                w.WriteNumber("blocked_seconds_median", Math.Round(straight.MedianBlocked.TotalSeconds, 6));
                w.WriteNumber("blocked_seconds_first", Math.Round(straight.FirstBlocked.TotalSeconds, 6));
                w.WriteNumber("crash_at_step", crashAt);
                w.WriteString("resumed_from", resumed.RestoredFrom);
                w.WriteNumber("resumed_first_step", resumed.FirstStep);
                w.WriteNumber("resumed_steps", resumed.LossBits.Length);
                w.WriteNumber("differing_losses", mismatches);
                w.WriteBoolean("final_weights_identical", weightsEqual);
                w.WriteNumber("final_loss", straight.Losses[^1]);
                w.WriteNumber("train_seconds", Math.Round(trainSeconds, 3));
                w.WriteNumber("workers", settings.Workers);
                w.WriteBoolean("replicas_agree", replicasAgree);
                w.WriteNumber("resumed_from_data_files", resumedShards);
                w.WriteString("dataset", straight.Dataset);
                w.WriteBoolean("resumed_batches_identical", batchesEqual);
                w.WriteStartArray("saves");
                foreach (var save in straight.Saves)
                {
                    w.WriteStartObject();
                    w.WriteNumber("step", save.Step);
                    w.WriteNumber("blocked_seconds", Math.Round(save.Blocked.TotalSeconds, 6));
                    w.WriteNumber("duration_seconds", Math.Round(save.Duration.TotalSeconds, 6));
                    w.WriteNumber("bytes", save.Bytes);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            });
            return ok ? ExitCodes.Ok : ExitCodes.DataProblem;
        }

        var table = new TextTable("run", "steps", "checkpoints", "bytes written", "save GB/s", "blocked per save (median)", "final loss").AlignRight(1, 2, 3, 4, 5, 6);
        table.Add("uninterrupted", $"1–{settings.Steps}", straight.CheckpointsWritten.ToString(CultureInfo.InvariantCulture),
            straight.BytesWritten.ToString("N0", CultureInfo.InvariantCulture),
            (straight.BytesWritten / 1e9 / Math.Max(straight.SaveTime.TotalSeconds, 1e-9)).ToString("F2", CultureInfo.InvariantCulture),
            $"{straight.MedianBlocked.TotalMilliseconds.ToString("F1", CultureInfo.InvariantCulture)} ms (first {straight.FirstBlocked.TotalMilliseconds.ToString("F0", CultureInfo.InvariantCulture)} ms)",
            straight.Losses[^1].ToString("G6", CultureInfo.InvariantCulture));
        table.Add("crashed", $"1–{crashAt}", interrupted.CheckpointsWritten.ToString(CultureInfo.InvariantCulture), "", "", "",
            BitConverter.UInt32BitsToSingle(interrupted.LossBits[^1]).ToString("G6", CultureInfo.InvariantCulture));
        table.Add("resumed", $"{resumed.FirstStep}–{settings.Steps}", resumed.CheckpointsWritten.ToString(CultureInfo.InvariantCulture), "", "", "",
            BitConverter.UInt32BitsToSingle(resumed.LossBits[^1]).ToString("G6", CultureInfo.InvariantCulture));
        output.WriteLine();
        table.WriteTo(output);
        output.WriteLine();
        // Per save of the uninterrupted run: what the loop paid (blocked) next to what the save took and wrote.
        var savesTable = new TextTable("save", "step", "loop blocked", "save duration", "size", "save GB/s").AlignRight(1, 2, 3, 4, 5);
        foreach (var (save, i) in straight.Saves.Select((x, i) => (x, i)))
        {
            savesTable.Add($"ckpt-{i + 1}", save.Step.ToString(CultureInfo.InvariantCulture),
                $"{save.Blocked.TotalMilliseconds.ToString("F1", CultureInfo.InvariantCulture)} ms",
                $"{save.Duration.TotalMilliseconds.ToString("F1", CultureInfo.InvariantCulture)} ms",
                $"{(save.Bytes / 1e6).ToString("F2", CultureInfo.InvariantCulture)} MB",
                (save.Bytes / 1e9 / Math.Max(save.Duration.TotalSeconds, 1e-9)).ToString("F2", CultureInfo.InvariantCulture));
        }
        savesTable.WriteTo(output);
        output.WriteLine();
        output.WriteLine($"data           {straight.Dataset}");
        output.WriteLine($"batches        {(batchesEqual ? $"identical: the resumed process's iterator yielded the uninterrupted run's batches {resumed.FirstStep}–{settings.Steps}" : $"{batchMismatches} batches DIFFER")}");
        output.WriteLine($"resumed from   {resumed.RestoredFrom ?? "(nothing: no checkpoint was found)"}");
        output.WriteLine($"loss curve     {(mismatches == 0 ? $"identical for all {resumed.LossBits.Length} resumed steps ({resumed.FirstStep}–{settings.Steps})" : $"{mismatches} of {resumed.LossBits.Length} resumed steps DIFFER")}");
        output.WriteLine($"final weights  {(weightsEqual ? "bit-identical" : "DIFFER")} (CRC32C 0x{straight.FinalWeightsCrc:x8} vs 0x{resumed.FinalWeightsCrc:x8})");
        if (settings.Workers > 1)
            output.WriteLine($"multi-worker   {settings.Workers} replicas {(replicasAgree ? "agree" : "DISAGREE")}; the checkpoint resumed from has {resumedShards} data file(s), one per worker's share (merged by the chief)");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{(ok ? "OK" : "FAILED")}  training {trainSeconds:F1} s; inspect the checkpoints with: ckpt inspect {uninterruptedDir}"));
        return ok ? ExitCodes.Ok : ExitCodes.DataProblem;
    }

    /// <summary>
    /// <c>--preempt-after</c>: trains in this process with the manager armed for SIGTERM, signals itself, and reports
    /// the step at the signal and the final checkpoint. Exit code 42 (<see cref="PreemptionOptions.DefaultExitCode"/>) when
    /// preempted with a durable final checkpoint, 1 when training ended before the signal.
    /// </summary>
    private static async Task<int> RunPreemptedAsync(DemoSettings settings, string? directory, TimeSpan after, TextWriter output, bool json, CancellationToken cancellationToken)
    {
        if (after <= TimeSpan.Zero) throw new CliException("--preempt-after must be positive.", ExitCodes.UsageOrUnsupported);
        var log = json ? Console.Error : output;
        var root = Path.GetFullPath(directory ?? Path.Combine(Path.GetTempPath(), $"ckpt-demo-{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Environment.ProcessId}"));
        var dir = Path.Combine(root, "preempted");
        if (Directory.Exists(dir) && Directory.EnumerateFileSystemEntries(dir).Any())
            throw new CliException($"{dir}: not empty; give --dir a new or empty directory.", ExitCodes.UsageOrUnsupported);
        log.WriteLine($"training in {dir}; SIGTERM to this process (pid {Environment.ProcessId}) after {after.TotalSeconds:0.###} s …");
        var preemption = new Demo.DemoPreemption(after);
        var result = await DemoTraining.RunAsync(settings, dir, settings.Steps, onStep: null, cancellationToken, preemption: preemption).ConfigureAwait(false);
        var ok = preemption.Preempted && preemption.FinalCheckpoint is { } final && File.Exists(Format.BundleNaming.IndexFile(final))
            && preemption.FinalCheckpointStep >= preemption.SignalStep && Format.CheckpointStateFile.LatestCheckpoint(dir) == final;
        if (json)
        {
            JsonOutput.Write(output, w =>
            {
                w.WriteBoolean("ok", ok);
                w.WriteBoolean("preempted", preemption.Preempted);
                w.WriteNumber("signal_step", preemption.SignalStep);
                w.WriteString("final_checkpoint", preemption.FinalCheckpoint);
                w.WriteNumber("final_checkpoint_step", preemption.FinalCheckpointStep);
                w.WriteNumber("last_step", result.FirstStep + result.Losses.Count - 1);
                w.WriteNumber("checkpoints_written", result.CheckpointsWritten + (preemption.Preempted ? 1 : 0));
                w.WriteString("directory", dir);
                w.WriteNumber("exit_code", ok ? PreemptionOptions.DefaultExitCode : ExitCodes.DataProblem);
            });
        }
        else
        {
            output.WriteLine(preemption.Preempted
                ? $"preempted      SIGTERM at step {preemption.SignalStep}; final checkpoint {preemption.FinalCheckpoint} holds step {preemption.FinalCheckpointStep}"
                : $"not preempted  training ended at step {settings.Steps} before the signal (use more --steps or a smaller --preempt-after)");
            output.WriteLine($"{(ok ? "OK" : "FAILED")}  exit code {(ok ? PreemptionOptions.DefaultExitCode : ExitCodes.DataProblem)}; resume with: ckpt demo … or restore {dir}");
        }
        return ok ? PreemptionOptions.DefaultExitCode : ExitCodes.DataProblem;
    }

    private static async Task<DemoRunResult> TrainWithProgressAsync(DemoSettings settings, string directory, TextWriter output, CancellationToken cancellationToken)
    {
        string Status(long step, float loss, string? last, double gbps, TimeSpan blocked) => string.Create(CultureInfo.InvariantCulture,
            $"step {step}/{settings.Steps}  loss {loss:G5}  last {(last is null ? "-" : Path.GetFileName(last))}  {gbps:F2} GB/s  blocked {blocked.TotalMilliseconds:F1} ms");

        if (!Console.IsErrorRedirected)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            return await console.Progress().AutoClear(true)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                .StartAsync(async ctx =>
                {
                    var task = ctx.AddTask("training", maxValue: settings.Steps);
                    return await DemoTraining.RunAsync(settings, directory, settings.Steps, (step, loss, last, gbps, blocked) =>
                    {
                        task.Description = Markup.Escape(Status(step, loss, last, gbps, blocked));
                        task.Value = step;
                    }, cancellationToken).ConfigureAwait(false);
                }).ConfigureAwait(false);
        }
        return await DemoTraining.RunAsync(settings, directory, settings.Steps, (step, loss, last, gbps, blocked) =>
        {
            if (step % settings.Every == 0 || step == settings.Steps) output.WriteLine(Status(step, loss, last, gbps, blocked));
        }, cancellationToken).ConfigureAwait(false);
    }

    private static async Task<int> RunChildAsync(DemoSettings settings, string directory, int stopAt, string phase, TextWriter output, CancellationToken cancellationToken)
    {
        // With --workers N (N > 1) the rank, world size and coordination directory come from LocalWorkerLauncher's environment.
        // With --launcher mpi they come from MPI (mpiexec), and the saves coordinate by MPI collectives.
        using var mpi = settings.Launcher == "mpi" ? InitializeMpi() : null;
        var worker = mpi is not null ? new WorkerContext(mpi)
            : settings.Workers > 1 ? WorkerContext.FromEnvironment() ?? throw new CliException("--workers N needs the environment LocalWorkerLauncher sets.", ExitCodes.UsageOrUnsupported) : null;
        var result = await DemoTraining.RunAsync(settings, directory, stopAt, onStep: null, cancellationToken, worker).ConfigureAwait(false);
        if (phase == "resume" && result.RestoredFrom is null)
            throw new CliException($"{directory}: the restarted process found no checkpoint to resume from.", ExitCodes.DataProblem);
        var report = new ChildReport(result.FirstStep, result.Losses.Select(BitConverter.SingleToUInt32Bits).ToArray(), [.. result.BatchCrcs],
            result.FinalWeightsCrc, result.RestoredFrom, result.CheckpointsWritten, result.RestoredFromDataFiles);
        output.WriteLine(JsonSerializer.Serialize(report));
        // Under mpiexec the ranks' standard outputs interleave (hydra splits long lines): the report also goes to a file.
        if (mpi is not null) await File.WriteAllTextAsync(MpiReportPath(directory, phase, mpi.Rank), JsonSerializer.Serialize(report), cancellationToken).ConfigureAwait(false);
        return ExitCodes.Ok;   // the "crashed" phase simply stops: nothing is saved after its last checkpoint
    }

    /// <summary>Runs the phase in fresh processes: one, or <see cref="DemoSettings.Workers"/> replicas under <see cref="LocalWorkerLauncher"/>.</summary>
    /// <returns>Each process's report, by rank.</returns>
    private static async Task<ChildReport[]> SpawnAsync(DemoSettings settings, string directory, string coordination, int stopAt, string phase, CancellationToken cancellationToken)
    {
        var executable = Environment.ProcessPath!;
        var args = new List<string>();
        // Under `dotnet ckpt.dll` the host is dotnet itself; as an apphost or tool shim the entry point is the process.
        if (string.Equals(Path.GetFileNameWithoutExtension(executable), "dotnet", StringComparison.Ordinal))
            args.Add(Assembly.GetEntryAssembly()!.Location);
        args.AddRange(["demo", "--phase", phase, "--dir", directory, "--stop-at", stopAt.ToString(CultureInfo.InvariantCulture),
            "--device", DeviceNames.Name(settings.Device), "--steps", settings.Steps.ToString(CultureInfo.InvariantCulture),
            "--every", settings.Every.ToString(CultureInfo.InvariantCulture), "--params", settings.ParameterCount.ToString(CultureInfo.InvariantCulture),
            "--workers", settings.Workers.ToString(CultureInfo.InvariantCulture), "--launcher", settings.Launcher]);
        if (settings.DataPath is not null) args.AddRange(["--data", Path.GetFullPath(settings.DataPath)]);
        if (settings.Launcher == "mpi") return await SpawnMpiAsync(settings, directory, executable, args, phase, cancellationToken).ConfigureAwait(false);
        using var launcher = LocalWorkerLauncher.Start(executable, _ => args, settings.Workers, coordination);
        var results = await launcher.WaitAllAsync(TimeSpan.FromMinutes(30), cancellationToken).ConfigureAwait(false);
        var reports = new ChildReport[results.Count];
        foreach (var r in results)
        {
            var who = settings.Workers > 1 ? $"the {phase} process of rank {r.Rank}" : $"the {phase} process";
            if (!r.Succeeded)
                throw new CliException($"{who} failed with exit code {r.ExitCode}{(r.Killed ? " (killed)" : "")}: {r.StandardError.Trim()}", ExitCodes.DataProblem);
            var line = r.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault()
                ?? throw new CliException($"{who} printed no report.", ExitCodes.DataProblem);
            reports[r.Rank] = JsonSerializer.Deserialize<ChildReport>(line) ?? throw new CliException($"{who} printed an empty report.", ExitCodes.DataProblem);
        }
        return reports;
    }

    private static string MpiReportPath(string directory, string phase, int rank) =>
        Path.Combine(Path.GetDirectoryName(Path.GetFullPath(directory))!, string.Create(CultureInfo.InvariantCulture, $"mpi-report.{phase}.rank-{rank}.json"));

    private static readonly string[] s_mpiexecNames = ["mpiexec.mpich", "mpiexec.hydra", "mpiexec"];

    private static Mpi.MpiCoordination InitializeMpi()
    {
        try
        {
            return Mpi.MpiCoordination.Initialize();
        }
        catch (DllNotFoundException ex)
        {
            throw new CliException(ex.Message, ExitCodes.UsageOrUnsupported);
        }
    }

    /// <summary>Runs the phase as <see cref="DemoSettings.Workers"/> ranks under MPICH's <c>mpiexec -n N</c>; each rank writes its report to a file beside the checkpoint directory.</summary>
    private static async Task<ChildReport[]> SpawnMpiAsync(DemoSettings settings, string directory, string executable, List<string> args, string phase, CancellationToken cancellationToken)
    {
        var mpiexec = s_mpiexecNames
            .SelectMany(name => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries).Select(d => Path.Combine(d, name)))
            .FirstOrDefault(File.Exists)
            ?? throw new CliException("--launcher mpi needs MPICH's mpiexec: apt-get install mpich.", ExitCodes.UsageOrUnsupported);
        var psi = new ProcessStartInfo(mpiexec) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in (string[])["-n", settings.Workers.ToString(CultureInfo.InvariantCulture), executable, .. args]) psi.ArgumentList.Add(a);
        using var process = Process.Start(psi) ?? throw new CliException($"could not start {mpiexec}.", ExitCodes.UsageOrUnsupported);
        var stdoutTask = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderrTask = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        var (stdout, stderr) = (await stdoutTask.ConfigureAwait(false), await stderrTask.ConfigureAwait(false));
        if (process.ExitCode != 0)
            throw new CliException($"the {phase} job under mpiexec -n {settings.Workers} failed with exit code {process.ExitCode}: {stderr.Trim()} {stdout.Trim()}", ExitCodes.DataProblem);
        var reports = new ChildReport[settings.Workers];
        for (var r = 0; r < reports.Length; r++)
        {
            var path = MpiReportPath(directory, phase, r);
            if (!File.Exists(path)) throw new CliException($"the {phase} process of rank {r} wrote no report ({path}).", ExitCodes.DataProblem);
            reports[r] = JsonSerializer.Deserialize<ChildReport>(await File.ReadAllTextAsync(path, cancellationToken).ConfigureAwait(false))
                ?? throw new CliException($"the {phase} process of rank {r} wrote an empty report.", ExitCodes.DataProblem);
        }
        return reports;
    }
}

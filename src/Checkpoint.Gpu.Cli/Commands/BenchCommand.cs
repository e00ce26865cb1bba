using System.CommandLine;
using System.Diagnostics;
using System.Globalization;

namespace CheckpointGpu.Cli.Commands;

/// <summary>
/// <c>ckpt bench</c>: runs the end-to-end save/restore benchmark of the IO pipeline (perf/Checkpoint.Gpu.Benchmarks,
/// console mode <c>e2e</c>) next to its limit (<c>fio</c>) and peers (naive FileStream, <c>torch.save</c>), one JSON line
/// per measurement.
/// </summary>
/// <remarks>
/// The benchmark lives with the other benchmarks in <c>perf/</c> (benchmarks are never part of the shipped library), so
/// this command needs the source checkout: it looks for <c>perf/Checkpoint.Gpu.Benchmarks</c> above the current
/// directory and above the tool itself, and runs it with <c>dotnet run -c Release</c>.
/// </remarks>
internal static class BenchCommand
{
    private const string ProjectRelativePath = "perf/Checkpoint.Gpu.Benchmarks/Checkpoint.Gpu.Benchmarks.csproj";

    public static Command Create()
    {
        var gib = new Option<double>("--gib") { Description = "Model size in GiB (float32 tensors from 4 KiB to 256 MiB).", DefaultValueFactory = _ => 1 };
        var device = DeviceNames.CreateOption("Accelerator");
        var dir = new Option<string?>("--dir") { Description = "Scratch directory on the disk to measure (default: ./e2e-bench); needs about 3x the model size free." };
        var repeats = new Option<int>("--repeats") { Description = "Repeats per measurement (medians are reported).", DefaultValueFactory = _ => 3 };
        var noTorch = new Option<bool>("--no-torch") { Description = "Skip the torch.save/torch.load peer." };
        var noSim = new Option<bool>("--no-sim") { Description = "Skip the training-loop simulation (step inflation, time blocked)." };
        var layout = new Option<string>("--layout") { Description = "Tensors to save: default (float32 tensors of 4 KiB to 256 MiB, --gib in total), transformer (a decoder-only transformer of --params parameters plus Adam moments) or many-small (16,384 tensors of 256 B to 16 KiB).", DefaultValueFactory = _ => "default" };
        layout.AcceptOnlyFromAmong("default", "transformer", "many-small");
        var parameters = new Option<string>("--params") { Description = "Transformer layout: parameter count, e.g. 125M, 350M, 1B (weights; Adam's m and v add two float32 copies).", DefaultValueFactory = _ => "1B" };
        var dtype = new Option<string>("--dtype") { Description = "Transformer layout: weight dtype float32, bf16 or fp16 (moments stay float32).", DefaultValueFactory = _ => "float32" };
        dtype.AcceptOnlyFromAmong("float32", "bf16", "fp16");
        var plot = new Option<string?>("--plot") { Description = "Also draw save and restore throughput against fio per run, and the timeline of one traced save (device copy, checksum and write per staging-ring slot), to this PNG file." };
        var noMoments = new Option<bool>("--no-moments") { Description = "Transformer layout: weights only, no Adam moments." };
        // Issue 14: the fine-tuning (incremental saves) and LZ4 scenarios.
        var scenario = new Option<string>("--scenario") { Description = "e2e (default: the IO pipeline benchmark), finetune (2 GiB frozen backbone + 16 MiB adapters with Adam, full vs incremental saves; prints finetune_ratios) or lz4 (LZ4 ratio and speed on corpus tensors, demo weights + Adam moments, random floats).", DefaultValueFactory = _ => "e2e" };
        scenario.AcceptOnlyFromAmong("e2e", "finetune", "lz4");
        var command = new Command("bench", """
            Run the end-to-end benchmark of the IO pipeline: durable save and cold restore throughput, peak extra memory,
            CRC cost, and a training loop checkpointing every K steps (time blocked, step inflation) for each snapshot
            policy, side by side with fio O_DIRECT (the disk's limit), a naive FileStream save and torch.save/torch.load
            (when /usr/bin/python3 has torch). Prints one JSON line per measurement. Needs the source checkout (perf/).

            Examples:
              ckpt bench --gib 1
              ckpt bench --gib 4 --device opencl --dir /mnt/nvme/scratch --repeats 3
              ckpt bench --layout transformer --params 1B --dtype bf16 --no-torch --no-sim --repeats 1
              ckpt bench --layout many-small --no-torch --no-sim
              ckpt bench --gib 0.25 --repeats 2 --no-torch --no-sim --plot bench.png
              ckpt bench --scenario finetune --dir /mnt/nvme/scratch
              ckpt bench --scenario lz4
            """) { gib, device, dir, repeats, noTorch, noSim, layout, parameters, dtype, noMoments, plot, scenario };
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (parse.GetValue(scenario) is "finetune" or "lz4")
            {
                List<string> scenarioArgs = [parse.GetValue(scenario)!];
                if (parse.GetValue(dir) is { } scratch) scenarioArgs.AddRange(["--dir", Path.GetFullPath(scratch)]);
                if (parse.GetValue(scenario) == "lz4") scenarioArgs.AddRange(["--repeats", parse.GetValue(repeats).ToString(CultureInfo.InvariantCulture)]);
                return await RunAsync(scenarioArgs, null, cancellationToken).ConfigureAwait(false);
            }
            DeviceNames.RequireSupported(DeviceNames.Parse(parse.GetValue(device)!));
            var args = new List<string> { "e2e", "--gib", parse.GetValue(gib).ToString(CultureInfo.InvariantCulture), "--device", parse.GetValue(device)!,
                "--repeats", parse.GetValue(repeats).ToString(CultureInfo.InvariantCulture) };
            if (parse.GetValue(dir) is { } d) args.AddRange(["--dir", Path.GetFullPath(d)]);
            if (parse.GetValue(noTorch)) args.Add("--no-torch");
            if (parse.GetValue(noSim)) args.Add("--no-sim");
            args.AddRange(["--layout", parse.GetValue(layout)!]);
            if (parse.GetValue(layout) == "transformer")
            {
                args.AddRange(["--params", parse.GetValue(parameters)!, "--dtype", parse.GetValue(dtype)!]);
                if (parse.GetValue(noMoments)) args.Add("--no-moments");
            }
            var plotPath = parse.GetValue(plot);
            if (plotPath is not null) args.Add("--trace");
            return await RunAsync(args, plotPath, cancellationToken).ConfigureAwait(false);
        });
        return command;
    }

    private static async Task<int> RunAsync(IReadOnlyList<string> benchmarkArgs, string? plotPath, CancellationToken cancellationToken)
    {
        var project = FindProject()
            ?? throw new CliException($"ckpt bench runs {ProjectRelativePath} from the Checkpoint.Gpu source checkout, which was not found above {Directory.GetCurrentDirectory()} or {AppContext.BaseDirectory}; run it from inside the checkout.", ExitCodes.UsageOrUnsupported);
        // With --plot the benchmark's JSON lines are read here (and passed on to standard output unchanged).
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = plotPath is not null };
        foreach (var a in new[] { "run", "-c", "Release", "--project", project, "--" }.Concat(benchmarkArgs)) psi.ArgumentList.Add(a);
        Console.Error.WriteLine($"ckpt bench: dotnet {string.Join(' ', psi.ArgumentList)}");
        using var process = Process.Start(psi) ?? throw new CliException("could not start dotnet.", ExitCodes.UsageOrUnsupported);
        var lines = new List<string>();
        try
        {
            if (plotPath is not null)
            {
                while (await process.StandardOutput.ReadLineAsync(cancellationToken).ConfigureAwait(false) is { } line)
                {
                    lines.Add(line);
                    if (!line.Contains("\"name\":\"trace\"", StringComparison.Ordinal)) Console.WriteLine(line);
                }
            }
            await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
        if (process.ExitCode != 0) return ExitCodes.DataProblem;
        if (plotPath is not null)
        {
            var (runs, trace, title) = Plots.BenchPlot.Parse(lines);
            Plots.BenchPlot.Render(runs, trace, title, plotPath);
            Console.Error.WriteLine($"ckpt bench: plot {Path.GetFullPath(plotPath)} ({runs.Count} runs, {trace.Count} trace events)");
        }
        return ExitCodes.Ok;
    }

    private static string? FindProject()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var d = new DirectoryInfo(start); d is not null; d = d.Parent)
            {
                var candidate = Path.Combine(d.FullName, ProjectRelativePath);
                if (File.Exists(candidate)) return candidate;
            }
        return null;
    }
}

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
        var command = new Command("bench", """
            Run the end-to-end benchmark of the IO pipeline: durable save and cold restore throughput, peak extra memory,
            CRC cost, and a training loop checkpointing every K steps (time blocked, step inflation) for each snapshot
            policy, side by side with fio O_DIRECT (the disk's limit), a naive FileStream save and torch.save/torch.load
            (when /usr/bin/python3 has torch). Prints one JSON line per measurement. Needs the source checkout (perf/).

            Examples:
              ckpt bench --gib 1
              ckpt bench --gib 4 --device opencl --dir /mnt/nvme/scratch --repeats 3
            """) { gib, device, dir, repeats, noTorch, noSim };
        command.SetAction(async (parse, cancellationToken) =>
        {
            DeviceNames.RequireSupported(DeviceNames.Parse(parse.GetValue(device)!));
            var args = new List<string> { "e2e", "--gib", parse.GetValue(gib).ToString(CultureInfo.InvariantCulture), "--device", parse.GetValue(device)!,
                "--repeats", parse.GetValue(repeats).ToString(CultureInfo.InvariantCulture) };
            if (parse.GetValue(dir) is { } d) args.AddRange(["--dir", Path.GetFullPath(d)]);
            if (parse.GetValue(noTorch)) args.Add("--no-torch");
            if (parse.GetValue(noSim)) args.Add("--no-sim");
            return await RunAsync(args, cancellationToken).ConfigureAwait(false);
        });
        return command;
    }

    private static async Task<int> RunAsync(IReadOnlyList<string> benchmarkArgs, CancellationToken cancellationToken)
    {
        var project = FindProject()
            ?? throw new CliException($"ckpt bench runs {ProjectRelativePath} from the Checkpoint.Gpu source checkout, which was not found above {Directory.GetCurrentDirectory()} or {AppContext.BaseDirectory}; run it from inside the checkout.", ExitCodes.UsageOrUnsupported);
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false };
        foreach (var a in new[] { "run", "-c", "Release", "--project", project, "--" }.Concat(benchmarkArgs)) psi.ArgumentList.Add(a);
        Console.Error.WriteLine($"ckpt bench: dotnet {string.Join(' ', psi.ArgumentList)}");
        using var process = Process.Start(psi) ?? throw new CliException("could not start dotnet.", ExitCodes.UsageOrUnsupported);
        try
        {
            await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
        return process.ExitCode == 0 ? ExitCodes.Ok : ExitCodes.DataProblem;
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

using BenchmarkDotNet.Running;

namespace CheckpointGpu.Benchmarks;

/// <summary>
/// Entry point: BenchmarkDotNet suites (<c>dotnet run -c Release --project perf/Checkpoint.Gpu.Benchmarks -- --filter '*Crc*'</c>).
/// Benchmarks never run under <c>dotnet test</c>.
/// </summary>
public static class Program
{
    /// <summary>Runs <c>e2e</c> (the end-to-end console mode, see EndToEnd/; with <c>--workers</c> the multi-worker save mode) or the benchmarks selected by <paramref name="args"/> (BenchmarkDotNet switcher syntax).</summary>
    public static async Task<int> Main(string[] args)
    {
        // Issue 14: incremental saves and LZ4 (Incremental/FinetuneBenchmark.cs).
        if (args.Length > 0 && args[0] == "finetune") return await Incremental.FinetuneBenchmark.RunFinetuneAsync(args[1..]);
        if (args.Length > 0 && args[0] == "lz4") return Incremental.FinetuneBenchmark.RunLz4(args[1..]);
        if (args.Length > 0 && args[0] == "e2e")
            return args.Contains("--workers") ? await EndToEnd.MultiWorkerBenchmark.RunAsync(args[1..]) : await EndToEnd.EndToEndBenchmark.RunAsync(args[1..]);
        // Hidden: one worker process of "e2e --workers N", started by LocalWorkerLauncher.
        if (args.Length > 0 && args[0] == "e2e-worker") return await EndToEnd.MultiWorkerBenchmark.RunWorkerAsync(args[1..]);
        // Hidden: one rank of the MPI coordination floor (no disk), started by mpiexec from "e2e --coordination mpi".
        // Hidden: the restarted process of "e2e" (time to first training step after a restart).
        if (args.Length > 0 && args[0] == "e2e-first-step") return await EndToEnd.CoreRestoreBenchmark.RunChildAsync(args[1..]);
        if (args.Length > 0 && args[0] == "e2e-mpi-floor") return await EndToEnd.MultiWorkerBenchmark.RunMpiFloorAsync(args[1..]);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}

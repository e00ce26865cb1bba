using BenchmarkDotNet.Running;

namespace CheckpointGpu.Benchmarks;

/// <summary>
/// Entry point: BenchmarkDotNet suites (<c>dotnet run -c Release --project perf/Checkpoint.Gpu.Benchmarks -- --filter '*Crc*'</c>).
/// Benchmarks never run under <c>dotnet test</c>.
/// </summary>
public static class Program
{
    /// <summary>Runs the benchmarks selected by <paramref name="args"/> (BenchmarkDotNet switcher syntax).</summary>
    public static int Main(string[] args)
    {
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}

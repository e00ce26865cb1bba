using System.Diagnostics;

namespace CheckpointGpu.Cli.Tests;

/// <summary>
/// Runs the <c>ckpt</c> command dispatch (<see cref="CkptApp.RunAsync"/>) in this process with captured writers: the
/// same code path as the tool minus process start-up, so thousands of runs fit in CI time.
/// </summary>
internal static class CkptInProcess
{
    public sealed record Result(int ExitCode, string StdOut, string StdErr, TimeSpan Elapsed);

    public static async Task<Result> RunAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var clock = Stopwatch.StartNew();
        var code = await CkptApp.RunAsync(args, output, error);
        return new Result(code, output.ToString(), error.ToString(), clock.Elapsed);
    }

    /// <summary>True when <paramref name="stderr"/> shows a .NET stack trace or an unexpected (unclassified) exception.</summary>
    public static bool LooksLikeCrash(string stderr) =>
        stderr.Contains("   at ", StringComparison.Ordinal) || stderr.Contains("internal error", StringComparison.Ordinal)
        || stderr.Contains("Unhandled exception", StringComparison.Ordinal);
}

using System.Diagnostics;
using System.Globalization;
using Spectre.Console;

namespace CheckpointGpu.Cli.Output;

/// <summary>
/// Progress over a known number of bytes, on standard error: a live bar on a terminal, plain
/// lines (at most one every 2 s, and only for work over 64 MiB) when standard error is redirected.
/// </summary>
internal static class ByteProgress
{
    private const long PlainThresholdBytes = 64L << 20;

    /// <summary>Runs <paramref name="work"/>, giving it a callback that adds processed bytes.</summary>
    public static T Run<T>(string description, long totalBytes, Func<Action<long>, T> work)
    {
        if (!Console.IsErrorRedirected && totalBytes > 0)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            return console.Progress()
                .AutoClear(true)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
                         new TransferSpeedColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask(description, maxValue: totalBytes);
                    return work(n => task.Increment(n));
                });
        }

        var done = 0L;
        var clock = Stopwatch.StartNew();
        var lastPrint = TimeSpan.Zero;
        return work(n =>
        {
            done += n;
            if (totalBytes < PlainThresholdBytes || clock.Elapsed - lastPrint < TimeSpan.FromSeconds(2)) return;
            lastPrint = clock.Elapsed;
            var gbps = done / 1e9 / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{description}: {done * 100.0 / totalBytes:F0}% ({done:N0} of {totalBytes:N0} bytes, {gbps:F2} GB/s)"));
        });
    }
}

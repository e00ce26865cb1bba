using System.Diagnostics;
using System.Globalization;
using Xunit.Abstractions;

namespace CheckpointGpu.Data.Tests;

/// <summary>
/// The iterator's promise: a run stopped mid-epoch and resumed in fresh processes from its checkpoints yields exactly
/// the batches of the uninterrupted run (ids, epochs and bytes), across several epochs with shuffling on.
/// </summary>
public sealed class CrossProcessTests(ITestOutputHelper output)
{
    private const int TotalBatches = 170; // a bit over 3 epochs of the test data
    private const int SaveEvery = 10;

    [Theory]
    [InlineData(7, 61)]     // crash before the first save: the second process starts from scratch
    [InlineData(33, 34)]    // second crash one batch after resuming
    [InlineData(58, 129)]   // crashes in epochs 1 and 2, mid-epoch
    public void CrashTwiceAndResume_FreshProcesses_SameBatchesAsUninterrupted(int firstStop, int secondStop)
    {
        using var ds = TestData.OpenSmall();
        var reference = TestData.NewIterator(ds);
        var expected = Enumerable.Range(0, TotalBatches).Select(_ => TestData.Line(reference.GetNext())).ToArray();
        Assert.True(reference.Epoch >= 3, $"only reached epoch {reference.Epoch}");

        using var dir = new TempDir("xproc");
        var runs = new[] { RunChild(dir.Path, firstStop), RunChild(dir.Path, secondStop), RunChild(dir.Path, null) };
        var lastSaved = 0L;
        long[] stops = [firstStop, secondStop, TotalBatches];
        for (var r = 0; r < runs.Length; r++)
        {
            var header = runs[r][0].Split(' ');
            var next = long.Parse(header[^1], CultureInfo.InvariantCulture);
            // Each run resumes at the last batch its predecessor saved at (saves after every 10th batch).
            Assert.Equal(lastSaved, next);
            if (r > 0 && lastSaved > 0) Assert.StartsWith("restored ", runs[r][0], StringComparison.Ordinal);
            var lines = runs[r].Skip(1).ToArray();
            Assert.Equal(stops[r] - next, lines.Length);
            for (var i = 0; i < lines.Length; i++) Assert.Equal(expected[next + i], lines[i]);
            lastSaved = (stops[r] - 1) / SaveEvery * SaveEvery;
            output.WriteLine($"run {r + 1}: batches {next}–{stops[r] - 1} identical ({header[1]})");
        }
    }

    private static string[] RunChild(string dir, int? stopAt)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "Checkpoint.Gpu.Data.IteratorChild.dll");
        Assert.True(File.Exists(dll), $"{dll} is missing (the test project references the IteratorChild project).");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        var args = new List<string> { dll, "--dir", dir, "--batches", $"{TotalBatches}", "--save-every", $"{SaveEvery}",
            "--seq", $"{TestData.SequenceLength}", "--batch", $"{TestData.BatchSize}", "--buffer", $"{TestData.ShuffleBuffer}",
            "--seed", TestData.Seed.ToString(CultureInfo.InvariantCulture), "--shard-size", $"{TestData.ShardSize}" };
        if (stopAt is { } s) args.AddRange(["--stop-at", s.ToString(CultureInfo.InvariantCulture)]);
        foreach (var f in TestData.SmallXmlFiles) args.AddRange(["--data", f]);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail("The child process did not finish within 2 minutes.");
        }
        Assert.True(process.ExitCode == 0, $"Child exited with {process.ExitCode}: {stderr.GetAwaiter().GetResult()}");
        return stdout.GetAwaiter().GetResult().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }
}

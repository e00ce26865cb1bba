using System.Diagnostics;
using System.Globalization;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;
using Xunit.Abstractions;

namespace CheckpointGpu.Nn.Tests;

/// <summary>
/// Whole processes, as a user runs them: the README's asynchronous example with plain <c>using</c> must leave every
/// checkpoint on disk when the process simply ends, and a job armed for preemption must, after a SIGTERM at any instant,
/// exit 42 with a final checkpoint no older than the signal, from which the next fresh process resumes.
/// </summary>
public sealed partial class ProcessLifecycleTests(ITestOutputHelper output)
{
    private const int SigTerm = 15;

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "kill")]
    private static partial int Kill(int pid, int signal);

    private const string IterKey = "optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE";

    [Fact]
    public async Task ReadmeAsyncExample_WithPlainUsing_EveryCheckpointIsOnDiskAfterTheProcessEnds()
    {
        using var dir = new TempDir("readme-async");
        var (exit, stdout, stderr) = await RunToEndAsync(["readme-async", dir.Path, "200"]);
        Assert.True(exit == 0, $"exit {exit}: {stdout} {stderr}");
        // Saves at steps 50, 100, 150, 200 → ckpt-1..4; max_to_keep 3 keeps ckpt-2..4, and the state file names the last one.
        var state = CheckpointStateFile.Read(dir.Path);
        Assert.NotNull(state);
        Assert.Equal("ckpt-4", state.ModelCheckpointPath);
        Assert.Equal(["ckpt-2", "ckpt-3", "ckpt-4"], state.AllModelCheckpointPaths);
        var step = 100L;
        foreach (var name in state.AllModelCheckpointPaths)
        {
            using var reader = TensorBundleReader.Open(Path.Combine(dir.Path, name));
            foreach (var e in reader.Entries) reader.VerifyEntry(e);
            Assert.Equal(step, ReadIter(reader));
            step += 50;
        }
        Assert.False(File.Exists(Path.Combine(dir.Path, "ckpt-1.index")));
        Assert.Empty(CheckpointDebris.Find(dir.Path));
    }

    [Fact]
    public async Task ProcessExit_WithASlowSaveQueued_WaitsForIt_CheckpointOnDisk()
    {
        using var dir = new TempDir("exit-slow");
        var (exit, stdout, stderr) = await RunToEndAsync(["exit-pending", dir.Path, "slow"]);
        Assert.True(exit == 0, $"exit {exit}: {stdout} {stderr}");
        Assert.Contains("done=False", stdout);   // Main returned before the save was durable
        Assert.Contains("waiting up to", stderr);
        Assert.Equal(Path.Combine(dir.Path, "ckpt-1"), CheckpointStateFile.LatestCheckpoint(dir.Path));
        using var reader = TensorBundleReader.Open(Path.Combine(dir.Path, "ckpt-1"));
        foreach (var e in reader.Entries) reader.VerifyEntry(e);
    }

    [Fact]
    public async Task ProcessExit_WithAHungSave_ReportsWhatWasNotWritten_AndEnds()
    {
        using var dir = new TempDir("exit-hung");
        var clock = Stopwatch.StartNew();
        var (exit, stdout, stderr) = await RunToEndAsync(["exit-pending", dir.Path, "hung"]);
        Assert.Contains("NOT WRITTEN", stderr);
        Assert.Contains(Path.Combine(dir.Path, "ckpt-1"), stderr);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"took {clock.Elapsed}");
        Assert.Null(CheckpointStateFile.LatestCheckpoint(dir.Path));   // the state file never names what was not written
        output.WriteLine($"exit {exit} after {clock.Elapsed.TotalSeconds:F1} s; stderr: {stderr.Trim()}");
    }

    [Fact]
    public async Task Sigterm_AtRandomInstants_EachFreshProcessResumesFromACheckpointNoOlderThanTheSignal()
    {
        var rounds = int.TryParse(Environment.GetEnvironmentVariable("CKPT_PREEMPT_ROUNDS"), out var n) ? n : 5;
        var seed = Environment.TickCount;
        var random = new Random(seed);
        output.WriteLine($"seed {seed}, rounds {rounds}");
        using var dir = new TempDir("preempt");
        var previousFinal = 0L;
        for (var round = 0; round < rounds; round++)
        {
            using var p = Start(["preempt", dir.Path, "20"]);
            var lines = new List<string>();
            string? line;
            while ((line = await p.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60))) is not null)
            {
                lines.Add(line);
                if (line == "started") break;
            }
            if (line != "started")
            {
                p.Kill();
                Assert.Fail($"round {round}: child did not start: {string.Join('|', lines)} {await p.StandardError.ReadToEndAsync()}");
            }
            // Each fresh process resumed from exactly the previous round's final checkpoint.
            Assert.Equal($"resumed {previousFinal.ToString(CultureInfo.InvariantCulture)}", lines[0]);
            await Task.Delay(random.Next(0, 1500));
            Assert.Equal(0, Kill(p.Id, SigTerm));
            var rest = await p.StandardOutput.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(60));
            await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
            var stderr = await p.StandardError.ReadToEndAsync();
            Assert.True(p.ExitCode == PreemptionOptions.DefaultExitCode, $"round {round}: exit {p.ExitCode}: {rest} {stderr}");
            var signalLine = rest.Split('\n', StringSplitOptions.TrimEntries).Single(l => l.StartsWith("signal-step ", StringComparison.Ordinal));
            var signalStep = long.Parse(signalLine["signal-step ".Length..], CultureInfo.InvariantCulture);
            var latest = CheckpointStateFile.LatestCheckpoint(dir.Path);
            Assert.NotNull(latest);
            using (var reader = TensorBundleReader.Open(latest))
            {
                foreach (var e in reader.Entries) reader.VerifyEntry(e);
                var final = ReadIter(reader);
                Assert.True(final >= signalStep, $"round {round}: final checkpoint {latest} holds step {final}, older than the signal's step {signalStep}");
                output.WriteLine($"round {round}: SIGTERM at step {signalStep}, final checkpoint {Path.GetFileName(latest)} at step {final}");
                previousFinal = final;
            }
            Assert.Empty(CheckpointDebris.Find(dir.Path));
        }
    }

    [Fact]
    public async Task Sigterm_LoopNeverReachesAStepBoundary_DeadlineEndsTheProcessWith43_StateFileStillValid()
    {
        using var dir = new TempDir("preempt-stuck");
        using var p = Start(["preempt-stuck", dir.Path, "5"]);
        string? line;
        while ((line = await p.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60))) is not null && line != "started") { }
        Assert.Equal("started", line);
        // Let a few periodic saves land, then signal.
        var clock = Stopwatch.StartNew();
        while (CheckpointStateFile.LatestCheckpoint(dir.Path) is null && clock.Elapsed < TimeSpan.FromSeconds(30)) await Task.Delay(20);
        Assert.Equal(0, Kill(p.Id, SigTerm));
        clock.Restart();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        var err = await stderr;
        output.WriteLine($"exit {p.ExitCode} {clock.Elapsed.TotalSeconds:F1} s after SIGTERM: {err.Trim()}");
        Assert.True(p.ExitCode == PreemptionOptions.DefaultDeadlineExitCode, $"exit {p.ExitCode}: {await stdout} {err}");
        Assert.Contains("deadline", err);
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(1.5), $"exited after {clock.Elapsed}, before the 2 s deadline");
        var latest = CheckpointStateFile.LatestCheckpoint(dir.Path);
        Assert.NotNull(latest);
        using var reader = TensorBundleReader.Open(latest);
        foreach (var e in reader.Entries) reader.VerifyEntry(e);
    }

    private static long ReadIter(TensorBundleReader reader)
    {
        var bytes = new byte[8];
        reader.ReadTensor(reader.GetEntry(IterKey), bytes);
        return BitConverter.ToInt64(bytes);
    }

    private static Process Start(string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "Checkpoint.Gpu.Nn.TrainChild.dll");
        Assert.True(File.Exists(dll), $"{dll} is missing (the test project references the TrainChild project).");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    private static async Task<(int Exit, string StdOut, string StdErr)> RunToEndAsync(string[] args)
    {
        using var p = Start(args);
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(2));
        return (p.ExitCode, await stdout, await stderr);
    }
}

using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using CheckpointGpu.Devices;
using CheckpointGpu.Distributed.Worker;
using CheckpointGpu.Format;
using Xunit.Abstractions;

namespace CheckpointGpu.Distributed.Tests;

/// <summary>
/// Multi-worker saves and restores coordinated by MPI (Checkpoint.Gpu.Mpi over MPICH), launched with MPICH's
/// <c>mpiexec -n N</c> (2–4 ranks oversubscribing the CI machine's cores). Without <c>mpiexec</c> the tests return
/// early with the reason printed, except under <c>CI=true</c>, where they fail (.ci/run installs <c>mpich</c>).
/// </summary>
public sealed partial class MpiMultiWorkerTests(ITestOutputHelper output) : IDisposable
{
    private static readonly string s_workerDll = Path.Combine(AppContext.BaseDirectory, "Checkpoint.Gpu.Distributed.Worker.dll");
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private sealed record MpiRun(int ExitCode, string StandardOutput, string StandardError)
    {
        /// <summary>Output lines of one rank (mpiexec -prepend-rank prefixes every line with "[rank] ").</summary>
        // mpiexec labels every chunk a rank writes with "[r] "; one rank's line can be split by another rank's chunk
        // (seen in CI: "[0] …(FailWriteWhen[1] FAILED rank 1: …\n[0] )..") — so collect every labelled chunk, not lines.
        public string Rank(int rank) => string.Join("\n",
            System.Text.RegularExpressions.Regex.Split(StandardOutput, @"(?=\[\d+\] )").Where(p => p.StartsWith($"[{rank}] ", StringComparison.Ordinal)));
    }

    private static string? FindMpiexec()
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            foreach (var name in new[] { "mpiexec.mpich", "mpiexec.hydra", "mpiexec" })
                if (File.Exists(Path.Combine(dir, name))) return Path.Combine(dir, name);
        return null;
    }

    /// <summary>False (with the reason printed) when MPICH is not installed here; under CI=true that is a failure.</summary>
    private bool MpiAvailable()
    {
        if (FindMpiexec() is not null && File.Exists("/usr/lib/x86_64-linux-gnu/libmpich.so.12") | File.Exists("/usr/lib/aarch64-linux-gnu/libmpich.so.12")) return true;
        var reason = "MPICH (mpiexec, libmpich.so.12) is not installed: apt-get install mpich";
        Assert.False(string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase), reason);
        output.WriteLine("SKIPPED: " + reason);
        return false;
    }

    private async Task<MpiRun> MpiexecAsync(int n, string[] args, Func<Process, StringBuilder, Task>? during = null, int timeoutSeconds = 120)
    {
        var psi = new ProcessStartInfo(FindMpiexec()!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in (string[])["-n", n.ToString(System.Globalization.CultureInfo.InvariantCulture), "-prepend-rank", "dotnet", s_workerDll, .. args]) psi.ArgumentList.Add(a);
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        using var process = new Process { StartInfo = psi };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (stdout) stdout.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
        var clock = Stopwatch.StartNew();
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (during is not null) await during(process, stdout);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(timeoutSeconds));
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"mpiexec -n {n} {string.Join(' ', args)} did not finish in {timeoutSeconds} s: {stdout}{stderr}");
        }
        process.WaitForExit();
        string o, e;
        lock (stdout) o = stdout.ToString();
        lock (stderr) e = stderr.ToString();
        output.WriteLine($"mpiexec -n {n} {string.Join(' ', args)}: exit {process.ExitCode} in {clock.Elapsed.TotalMilliseconds:0} ms\n{o}{e}");
        return new MpiRun(process.ExitCode, o, e);
    }

    private string[] SaveArgs(bool async, params string[] extra) => ["save", "--mpi", "--dir", _dir["ckpts"], .. extra, .. async ? new[] { "--async" } : []];

    [Theory]
    [InlineData(2, false)]
    [InlineData(3, true)]
    [InlineData(4, false)]
    public async Task Save_UnderMpiexec_EqualsSingleProcessAndFileSystemCoordinatedSaves_RestoresOnAnyRankCount(int n, bool async)
    {
        if (!MpiAvailable()) return;
        var run = await MpiexecAsync(n, SaveArgs(async, "--saves", "2"));
        Assert.True(run.ExitCode == 0, run.StandardOutput + run.StandardError);
        for (var r = 0; r < n; r++) Assert.Contains($"SAVED {_dir["ckpts/ckpt-2"]} ", run.Rank(r), StringComparison.Ordinal);
        Assert.True(CheckpointManager.TryGetLatestCheckpoint(_dir["ckpts"], out var latest));
        Assert.Equal(_dir["ckpts/ckpt-2"], latest);
        Assert.False(Directory.Exists(_dir["ckpts/ckpt-1_temp"]) || Directory.Exists(_dir["ckpts/ckpt-2_temp"]), "part directories left behind");
        Assert.False(Directory.Exists(_dir["coord"]), "MPI coordination must not use marker files");

        // The same job coordinated by marker files on the shared filesystem: the merged index must be the same bytes.
        using (var launcher = LocalWorkerLauncher.Start("dotnet", _ => [s_workerDll, "save", "--dir", _dir["fs"], "--saves", "2", .. async ? new[] { "--async" } : []], n, _dir["coord"]))
            Assert.All(await launcher.WaitAllAsync(TimeSpan.FromSeconds(90)), r => Assert.True(r.Succeeded, r.StandardOutput + r.StandardError));
        Assert.Equal(File.ReadAllBytes(_dir["fs/ckpt-2.index"]), File.ReadAllBytes(_dir["ckpts/ckpt-2.index"]));
        for (var shard = 0; shard < n; shard++)
        {
            var name = BundleNaming.DataFile("ckpt-2", shard, n);
            Assert.Equal(File.ReadAllBytes(Path.Combine(_dir["fs"], name)), File.ReadAllBytes(Path.Combine(_dir["ckpts"], name)));
        }

        // Against one process holding everything (an independent, single-process save): same entries, values, checksums.
        using (var accelerator = Accelerator.Create(AcceleratorKind.Cpu))
        using (var reference = new WorkerModel(accelerator, Enumerable.Range(0, n).ToArray(), n, fill: true))
        {
            reference.Checkpoint.Save(_dir["ref/ckpt"]);
            reference.Checkpoint.Save(_dir["ref/ckpt"]);
        }
        using (var merged = TensorBundleReader.Open(latest))
        using (var single = TensorBundleReader.Open(_dir["ref/ckpt-2"]))
        {
            Assert.Equal(n, merged.Header.ShardCount);
            foreach (var e in merged.Entries) merged.VerifyEntry(e);
            Assert.Equal(single.Entries.Select(e => (e.Key, e.DType, e.Shape, e.Size, e.Crc32C)), merged.Entries.Select(e => (e.Key, e.DType, e.Shape, e.Size, e.Crc32C)));
            foreach (var (m, s) in merged.Entries.Zip(single.Entries))
            {
                Assert.Equal(s.Slices, m.Slices);
                if (m.IsPartitioned) continue;
                var a = new byte[m.Size];
                var b = new byte[s.Size];
                merged.ReadRawBytes(m, 0, a);
                single.ReadRawBytes(s, 0, b);
                Assert.Equal(b, a);
            }
        }

        // Restore under MPI (rank 0 reads the metadata once and broadcasts it) on M ranks, partitioned variables re-sliced;
        // every value is compared with independently computed bytes in the worker.
        foreach (var m in n == 3 ? new[] { 1, 2, 3, 4 } : [n == 2 ? 3 : 1])
        {
            var restored = await MpiexecAsync(m, ["restore", "--mpi", "--prefix", latest, "--dir", _dir["ckpts"]]);
            Assert.True(restored.ExitCode == 0, restored.StandardOutput + restored.StandardError);
            for (var r = 0; r < m; r++) Assert.Contains("RESTORED OK", restored.Rank(r), StringComparison.Ordinal);
        }
        // A checkpoint the file-system coordination wrote restores under MPI too.
        var fromFs = await MpiexecAsync(2, ["restore", "--mpi", "--prefix", _dir["fs/ckpt-2"], "--dir", _dir["fs"]]);
        Assert.True(fromFs.ExitCode == 0 && fromFs.Rank(1).Contains("RESTORED OK", StringComparison.Ordinal), fromFs.StandardOutput + fromFs.StandardError);
    }

    [Fact]
    public async Task WaitForPublishedFalse_NonChiefRanksDoNotWait_RoundsStayInOrder()
    {
        if (!MpiAvailable()) return;
        // Non-chief ranks return once their report is sent; their MPI threads still receive every verdict before the
        // next round's gather, so three back-to-back saves all publish (a verdict left unreceived, or received out of
        // order, would make round 2 or 3 hang into the watchdog or abort).
        var run = await MpiexecAsync(3, SaveArgs(false, "--saves", "3", "--no-wait", "--timeout-s", "60"));
        Assert.True(run.ExitCode == 0, run.StandardOutput + run.StandardError);
        for (var r = 0; r < 3; r++)
            for (var k = 1; k <= 3; k++)
                Assert.Contains($"SAVED {_dir[$"ckpts/ckpt-{k}"]} ", run.Rank(r), StringComparison.Ordinal);
        Assert.True(CheckpointManager.TryGetLatestCheckpoint(_dir["ckpts"], out var latest));
        Assert.Equal(_dir["ckpts/ckpt-3"], latest);
        for (var k = 1; k <= 3; k++)
        {
            Assert.False(Directory.Exists(_dir[$"ckpts/ckpt-{k}_temp"]), "part directory left behind");
            using var reader = TensorBundleReader.Open(_dir[$"ckpts/ckpt-{k}"]);
            foreach (var e in reader.Entries) reader.VerifyEntry(e);
        }
    }

    [Fact]
    public async Task RoundEndedOnTheChiefsThread_WakesTheMpiThreadForAHeldBackFailureRound()
    {
        if (!MpiAvailable()) return;
        // The chief gathers and decides round 1 on its own thread (no MPI-thread work item), after queueing its failure
        // report for round 2, which the MPI thread holds back until round 1 ends. The chief then makes no MPI call for 4 s:
        // only EndRoundHere's wake lets the MPI thread run round 2 at once (without it, round 2 waited for the chief's
        // next call, or hung into the watchdog).
        var run = await MpiexecAsync(3, ["rounds", "--mpi"]);
        Assert.True(run.ExitCode == 0, run.StandardOutput + run.StandardError);
        for (var r = 0; r < 3; r++) Assert.Contains("ROUND 1 published=True", run.Rank(r), StringComparison.Ordinal);
        for (var r = 1; r < 3; r++)
        {
            var m = RoundTwo().Match(run.Rank(r));
            Assert.True(m.Success, run.Rank(r));
            var seconds = double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(seconds < 3, $"rank {r} waited {seconds} s for round 2's verdict (the chief held its thread 4 s)");
        }
    }

    [GeneratedRegex(@"ROUND 2 published=False failed_ranks=0 after ([0-9.]+) s")]
    private static partial Regex RoundTwo();

    [Theory]
    [InlineData(false, "--fail-rank")]
    [InlineData(true, "--fail-write-rank")]
    public async Task RankFails_EveryRankAbortsCleanly_PreviousCheckpointStaysLatest(bool async, string fault)
    {
        if (!MpiAvailable()) return;
        var clock = Stopwatch.StartNew();
        var run = await MpiexecAsync(3, SaveArgs(async, "--saves", "2", fault, "1", "--fault-save", "2"));
        // The failing rank reports through the gather; the others learn the verdict from the chief's broadcast at once
        // (the default timeout is 5 minutes: nobody waited for it).
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"took {clock.Elapsed}");
        Assert.Contains("FAILED rank 1", run.Rank(1), StringComparison.Ordinal);
        Assert.Contains("ABORTED", run.Rank(0), StringComparison.Ordinal);
        Assert.Contains("ABORTED", run.Rank(2), StringComparison.Ordinal);
        Assert.Contains("failed=[1]", run.Rank(0), StringComparison.Ordinal);
        Assert.Contains("injected", run.Rank(2), StringComparison.Ordinal);
        Assert.True(CheckpointManager.TryGetLatestCheckpoint(_dir["ckpts"], out var latest));
        Assert.Equal(_dir["ckpts/ckpt-1"], latest);
        Assert.False(File.Exists(_dir["ckpts/ckpt-2.index"]));
        Assert.Empty(Directory.EnumerateFiles(_dir["ckpts"], "ckpt-2.data-*"));
        Assert.False(Directory.Exists(_dir["ckpts/ckpt-2_temp"]), "part directory left behind");
        Assert.Empty(Directory.EnumerateFiles(_dir["ckpts"], "*tempstate*"));
        using var reader = TensorBundleReader.Open(latest);
        foreach (var e in reader.Entries) reader.VerifyEntry(e);
    }

    [Fact]
    public async Task RankKilledMidSave_MpiEndsTheJob_PreviousCheckpointStaysLatestAndRestores()
    {
        if (!MpiAvailable()) return;
        var run = await MpiexecAsync(3, SaveArgs(false, "--saves", "2", "--hang-rank", "1", "--fault-save", "2"), async (_, stdout) =>
        {
            var clock = Stopwatch.StartNew();
            Match? m = null;
            while (clock.Elapsed < TimeSpan.FromSeconds(60))
            {
                lock (stdout) m = SavingPid().Match(stdout.ToString());
                if (m.Success) break;
                await Task.Delay(50);
            }
            Assert.True(m is { Success: true }, "rank 1 never reached its second save");
            Assert.True(Directory.Exists(_dir["ckpts/ckpt-2_temp"]), "the other ranks' parts are being written");
            using var victim = Process.GetProcessById(int.Parse(m!.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
            victim.Kill();
        });
        // MPI's default error handling: a dead rank ends the whole job (hydra kills the others); nothing is published.
        Assert.NotEqual(0, run.ExitCode);
        Assert.DoesNotContain($"SAVED {_dir["ckpts/ckpt-2"]}", run.StandardOutput, StringComparison.Ordinal);
        Assert.True(CheckpointManager.TryGetLatestCheckpoint(_dir["ckpts"], out var latest));
        Assert.Equal(_dir["ckpts/ckpt-1"], latest);
        Assert.False(File.Exists(_dir["ckpts/ckpt-2.index"]), "a checkpoint was published without every rank");
        Assert.Empty(Directory.EnumerateFiles(_dir["ckpts"], "ckpt-2.data-*"));
        using (var reader = TensorBundleReader.Open(latest))
            foreach (var e in reader.Entries) reader.VerifyEntry(e);
        // What a restarted job finds: ckpt-1 latest and restorable on any rank count; ckpt-2_temp/ is crash debris.
        var restored = await MpiexecAsync(2, ["restore", "--mpi", "--prefix", latest, "--dir", _dir["ckpts"]]);
        Assert.True(restored.ExitCode == 0, restored.StandardOutput + restored.StandardError);
    }

    [Fact]
    public async Task RankHangs_WatchdogEndsTheJobAfterTheConfiguredTimeout()
    {
        if (!MpiAvailable()) return;
        var clock = Stopwatch.StartNew();
        var run = await MpiexecAsync(2, SaveArgs(false, "--hang-rank", "1", "--timeout-s", "2"));
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("MPI_Abort(75)", run.StandardError + run.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("did not complete within 2 s", run.StandardError + run.StandardOutput, StringComparison.Ordinal);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"took {clock.Elapsed}");
        Assert.False(File.Exists(_dir["ckpts/ckpt-1.index"]));
        Assert.False(File.Exists(_dir["ckpts/checkpoint"]));
    }

    [Fact]
    public async Task MpichMissing_ClearErrorNamingThePackage()
    {
        // Not under mpiexec: the worker initializes MPI itself; the library name points nowhere, as on a machine without MPICH.
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { s_workerDll, "save", "--mpi", "--dir", _dir["ckpts"] }) psi.ArgumentList.Add(a);
        psi.Environment["CKPT_MPI_LIBRARY"] = "/nonexistent/libmpich.so.12";
        using var process = Process.Start(psi)!;
        var stdout = await process.StandardOutput.ReadToEndAsync();
        var stderr = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        output.WriteLine(stdout + stderr);
        Assert.Equal(5, process.ExitCode);
        Assert.Contains("MPI UNAVAILABLE", stdout, StringComparison.Ordinal);
        Assert.Contains("/nonexistent/libmpich.so.12", stdout, StringComparison.Ordinal);
        Assert.Contains("apt-get install mpich", stdout, StringComparison.Ordinal);
        Assert.False(Directory.Exists(_dir["ckpts"]) && Directory.EnumerateFileSystemEntries(_dir["ckpts"]).Any());
    }

    [GeneratedRegex(@"\[1\] SAVING pid=(\d+)")]
    private static partial Regex SavingPid();
}

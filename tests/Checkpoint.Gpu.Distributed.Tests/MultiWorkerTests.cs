using System.Diagnostics;
using CheckpointGpu.Devices;
using CheckpointGpu.Distributed.Worker;
using CheckpointGpu.Format;
using Xunit.Abstractions;

namespace CheckpointGpu.Distributed.Tests;

/// <summary>End to end with real worker processes sharing a directory (LocalWorkerLauncher).</summary>
public sealed class MultiWorkerTests(ITestOutputHelper output) : IDisposable
{
    private static readonly string s_workerDll = Path.Combine(AppContext.BaseDirectory, "Checkpoint.Gpu.Distributed.Worker.dll");
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private async Task<IReadOnlyList<WorkerProcessResult>> RunAsync(int n, Func<int, string[]> args, Dictionary<string, string>? env = null, Func<LocalWorkerLauncher, Task>? during = null)
    {
        using var launcher = LocalWorkerLauncher.Start("dotnet", r => [s_workerDll, .. args(r)], n, _dir["coord"], env);
        if (during is not null) await during(launcher);
        var results = await launcher.WaitAllAsync(TimeSpan.FromSeconds(90));
        foreach (var r in results)
            output.WriteLine($"rank {r.Rank}/{n} exit {r.ExitCode}{(r.Killed ? " (killed)" : "")} {r.Elapsed.TotalMilliseconds:0} ms: {r.StandardOutput.Trim()} {r.StandardError.Trim()}");
        return results;
    }

    private string[] SaveArgs(params string[] extra) => ["save", "--dir", _dir["ckpts"], .. extra];

    /// <summary>Save arguments; <paramref name="async"/> makes the worker save through the IO pipeline (SaveAsync).</summary>
    private string[] SaveArgs(bool async, params string[] extra) => async ? SaveArgs([.. extra, "--async"]) : SaveArgs(extra);

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(4, false)]
    [InlineData(1, true)]
    [InlineData(2, true)]
    [InlineData(4, true)]
    public async Task Save_OnNWorkers_MatchesSingleProcess_AndRestoresOnAnyWorkerCount(int n, bool async)
    {
        var results = await RunAsync(n, _ => SaveArgs(async));
        Assert.All(results, r => Assert.True(r.Succeeded, r.StandardOutput + r.StandardError));
        var prefix = _dir["ckpts/ckpt-1"];
        Assert.True(CheckpointManager.TryGetLatestCheckpoint(_dir["ckpts"], out var latest));
        Assert.Equal(Path.GetFullPath(prefix), Path.GetFullPath(latest));
        AssertNoTemporaries("ckpt-1");

        // Reference: one process holding every variable and every embedding slice, plain single-process save.
        using (var accelerator = Accelerator.Create(AcceleratorKind.Cpu))
        using (var reference = new WorkerModel(accelerator, Enumerable.Range(0, n).ToArray(), n, fill: true))
            reference.Checkpoint.Save(_dir["ref/ckpt"]);
        using var merged = TensorBundleReader.Open(prefix);
        using var single = TensorBundleReader.Open(_dir["ref/ckpt-1"]);
        Assert.Equal(n, merged.Header.ShardCount);
        foreach (var e in merged.Entries) merged.VerifyEntry(e);
        Assert.Equal(single.Entries.Select(e => e.Key), merged.Entries.Select(e => e.Key));
        foreach (var (m, s) in merged.Entries.Zip(single.Entries))
        {
            Assert.True(m.KeyUtf8.Span.SequenceEqual(s.KeyUtf8.Span), m.Key);
            Assert.Equal((s.DType, s.Shape, s.Size, s.Crc32C), (m.DType, m.Shape, m.Size, m.Crc32C));
            Assert.Equal(s.Slices, m.Slices);
            if (m.IsPartitioned) continue;
            var a = new byte[m.Size];
            var b = new byte[s.Size];
            merged.ReadRawBytes(m, 0, a);
            single.ReadRawBytes(s, 0, b);
            Assert.Equal(b, a);
        }
        output.WriteLine($"N={n} async={async}: {merged.Entries.Count} entries, {merged.Header.ShardCount} data files; equal to the single-process save");

        foreach (var m in new[] { 1, 2, 3, 4 })
        {
            var restored = await RunAsync(m, _ => ["restore", "--prefix", prefix, "--dir", _dir["ckpts"]]);
            Assert.All(restored, r => Assert.True(r.Succeeded && r.StandardOutput.Contains("RESTORED OK", StringComparison.Ordinal), $"N={n} M={m} rank {r.Rank}: {r.StandardOutput}{r.StandardError}"));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Save_WhenOnlyTheChiefOwnsTensors_OtherWorkersWriteNothingAndStillReport(bool async)
    {
        // Three workers, two saves: ranks 1 and 2 own nothing, so they write no part (async: a commit-only pipeline step)
        // and only report; the chief's part is the whole checkpoint.
        var results = await RunAsync(3, _ => SaveArgs(async, "--chief-holds-all", "--saves", "2"), new() { [WorkerContext.TimeoutVariable] = "60" });
        Assert.All(results, r => Assert.True(r.Succeeded, r.StandardOutput + r.StandardError));
        Assert.All(results, r => Assert.Contains($"SAVED {_dir["ckpts/ckpt-2"]} ", r.StandardOutput, StringComparison.Ordinal));
        AssertNoTemporaries("ckpt-1");
        AssertNoTemporaries("ckpt-2");
        using (var accelerator = Accelerator.Create(AcceleratorKind.Cpu))
        using (var reference = new WorkerModel(accelerator, [0, 1, 2], 3, fill: true))
        {
            reference.Checkpoint.Save(_dir["ref/ckpt"]);
            reference.Checkpoint.Save(_dir["ref/ckpt"]);   // save_counter 2, as in ckpt-2
        }
        using var merged = TensorBundleReader.Open(_dir["ckpts/ckpt-2"]);
        using var single = TensorBundleReader.Open(_dir["ref/ckpt-2"]);
        Assert.Equal(1, merged.Header.ShardCount);
        Assert.Equal(single.Entries.Select(e => (e.Key, e.DType, e.Shape, e.Size, e.Crc32C)), merged.Entries.Select(e => (e.Key, e.DType, e.Shape, e.Size, e.Crc32C)));
        foreach (var e in merged.Entries) merged.VerifyEntry(e);
        Assert.False(Directory.EnumerateFiles(_dir["ckpts"], "ckpt-*.data-*-of-00003").Any(), "a worker that owns nothing must not count as a data file");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ManagerSave_OnTwoWorkers_OnlyChiefRecordsAndPrunes(bool async)
    {
        var results = await RunAsync(2, _ => SaveArgs(async, "--manager", "--saves", "3", "--keep", "2"));
        Assert.All(results, r => Assert.True(r.Succeeded, r.StandardOutput + r.StandardError));
        Assert.True(CheckpointManager.TryGetLatestCheckpoint(_dir["ckpts"], out var latest));
        Assert.EndsWith("ckpt-3", latest, StringComparison.Ordinal);
        Assert.False(File.Exists(_dir["ckpts/ckpt-1.index"]));
        Assert.Empty(Directory.EnumerateFiles(_dir["ckpts"], "ckpt-1.data-*"));
        foreach (var k in new[] { 2, 3 })
        {
            using var reader = TensorBundleReader.Open(_dir[$"ckpts/ckpt-{k}"]);
            Assert.Equal(2, reader.Header.ShardCount);
            foreach (var e in reader.Entries) reader.VerifyEntry(e);
        }
        Assert.Empty(Directory.EnumerateFiles(_dir["coord"], "*.rank-*"));
    }

    /// <summary>
    /// Issue 14: incremental manager saves on two worker processes: from the third save on, each worker hard-links the data
    /// file of its own unchanged tensors from the previous merged checkpoint; every checkpoint left after pruning is a
    /// plain, verifiable TF bundle that restores on one and on two workers.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task IncrementalManagerSave_OnTwoWorkers_EachLinksItsOwnPart_PrunedRunStaysVerifiable(bool async)
    {
        var results = await RunAsync(2, _ => SaveArgs(async, "--manager", "--saves", "4", "--keep", "2", "--incremental"), new() { [WorkerContext.TimeoutVariable] = "60" });
        Assert.All(results, r => Assert.True(r.Succeeded, r.StandardOutput + r.StandardError));
        var last = _dir["ckpts/ckpt-4"];
        // Both ranks own dense variables (BalancedOwnership), unchanged since save 1: each links one data file of its own.
        Assert.All(results, r => Assert.Contains($"INCREMENTAL {last} linked=1 ", r.StandardOutput, StringComparison.Ordinal));
        Assert.False(File.Exists(_dir["ckpts/ckpt-2.index"]));
        foreach (var k in new[] { 3, 4 })
        {
            using var reader = TensorBundleReader.Open(_dir[$"ckpts/ckpt-{k}"]);
            foreach (var e in reader.Entries) reader.VerifyEntry(e);
        }
        using (var a = TensorBundleReader.Open(_dir["ckpts/ckpt-3"]))
        using (var b = TensorBundleReader.Open(last))
        {
            Assert.Equal(a.Entries.Select(e => e.Key), b.Entries.Select(e => e.Key));
            var big = b.GetEntry("model/big/.ATTRIBUTES/VARIABLE_VALUE");
            Assert.Equal(a.GetEntry(big.Key).Crc32C, big.Crc32C);
            // ckpt-3's and ckpt-4's file holding 'big' are one file (a hard link) on this filesystem.
            var fa = new FileInfo(BundleNaming.DataFile(_dir["ckpts/ckpt-3"], a.GetEntry(big.Key).ShardId, a.Header.ShardCount));
            var fb = new FileInfo(BundleNaming.DataFile(last, big.ShardId, b.Header.ShardCount));
            if (!OperatingSystem.IsWindows()) Assert.Equal(Inode(fa.FullName), Inode(fb.FullName));
        }
        AssertNoTemporaries("ckpt-4");
        foreach (var m in new[] { 1, 2 })
        {
            var restored = await RunAsync(m, _ => ["restore", "--prefix", last, "--dir", _dir["ckpts"]]);
            Assert.All(restored, r => Assert.True(r.Succeeded && r.StandardOutput.Contains("RESTORED OK", StringComparison.Ordinal), $"M={m} rank {r.Rank}: {r.StandardOutput}{r.StandardError}"));
        }
    }

    private static string Inode(string path)
    {
        var psi = new ProcessStartInfo("stat", ["-c", "%i", path]) { RedirectStandardOutput = true };
        using var p = Process.Start(psi)!;
        var text = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return text.Trim();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task WorkerKilledMidSave_NothingPublished_PreviousCheckpointIntact_NoTemporaries(bool async)
    {
        var env = new Dictionary<string, string> { [WorkerContext.TimeoutVariable] = "3" };
        var results = await RunAsync(3, _ => SaveArgs(async, "--saves", "2", "--hang-rank", "1", "--fault-save", "2"), env, async launcher =>
        {
            Assert.True(await launcher.WaitForOutputAsync(1, "SAVING", TimeSpan.FromSeconds(60)));
            // Async: the worker hangs in its part's writes (its temporaries exist). Sync saves are the same pipeline save,
            // planned first: the worker hangs while its host state is snapshotted for the plan, before any file exists.
            if (async) Assert.True(Directory.EnumerateFiles(_dir["ckpts/ckpt-2_temp"], "*tempstate*").Any(), "the killed worker had a part in progress");
            launcher.Kill(1);
        });
        Assert.True(results[1].Killed);
        Assert.Equal(3, results[0].ExitCode);
        Assert.Contains("rank(s) 1", results[0].StandardOutput, StringComparison.Ordinal);
        Assert.Contains("missing=[1]", results[0].StandardOutput, StringComparison.Ordinal);
        Assert.Equal(3, results[2].ExitCode);   // the other worker learns of the abort from the chief's verdict
        Assert.Contains("the chief aborted", results[2].StandardOutput, StringComparison.Ordinal);
        AssertNotPublished("ckpt-2");
        Assert.True(CheckpointManager.TryGetLatestCheckpoint(_dir["ckpts"], out var latest));
        Assert.EndsWith("ckpt-1", latest, StringComparison.Ordinal);
        using (var reader = TensorBundleReader.Open(latest))
            foreach (var e in reader.Entries) reader.VerifyEntry(e);
        var restored = await RunAsync(1, _ => ["restore", "--prefix", latest, "--dir", _dir["ckpts"]]);
        Assert.True(restored[0].Succeeded, restored[0].StandardOutput);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task WorkerTimesOut_ChiefAbortsNamingIt_LateWorkerCleansUp(bool async)
    {
        var env = new Dictionary<string, string> { [WorkerContext.TimeoutVariable] = "2" };
        var results = await RunAsync(2, _ => SaveArgs(async, "--delay-rank", "1", "--delay-ms", "5000"), env);
        Assert.Equal(3, results[0].ExitCode);
        Assert.Contains("no completion marker from rank(s) 1", results[0].StandardOutput, StringComparison.Ordinal);
        Assert.Equal(3, results[1].ExitCode);
        AssertNotPublished("ckpt-1");
        Assert.False(File.Exists(_dir["ckpts/checkpoint"]));
    }

    [Theory]
    [InlineData(false, "--fail-rank", "injected failure on rank 1")]
    [InlineData(true, "--fail-rank", "injected failure on rank 1")]
    [InlineData(true, "--fail-write-rank", "injected write failure")]
    public async Task WorkerFails_ChiefAbortsAtOnce(bool async, string fault, string reported)
    {
        var clock = Stopwatch.StartNew();
        var results = await RunAsync(2, _ => SaveArgs(async, fault, "1"), new() { [WorkerContext.TimeoutVariable] = "60" });
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(45), "did not wait for the timeout");
        Assert.Equal(3, results[0].ExitCode);
        Assert.Contains("failed=[1]", results[0].StandardOutput, StringComparison.Ordinal);
        Assert.Contains(reported, results[0].StandardOutput, StringComparison.Ordinal);
        AssertNotPublished("ckpt-1");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task WorkersBuildDifferentGraphs_ChiefRefusesToMerge(bool async)
    {
        var results = await RunAsync(2, _ => SaveArgs(async, "--extra-node-rank", "1"), new() { [WorkerContext.TimeoutVariable] = "60" });
        Assert.Equal(3, results[0].ExitCode);
        Assert.Contains("different object graph", results[0].StandardOutput, StringComparison.Ordinal);
        AssertNotPublished("ckpt-1");
    }

    [Fact]
    [Trait("Category", "LongRunning")]
    public async Task AggregateSaveThroughput_OneTwoFourWorkers()
    {
        // 48 MiB of replicated variables (+ the small model), spread by BalancedOwnership; the figure is the chief's
        // wall time for the whole save (write, coordinate, merge) of the last of 2 saves.
        foreach (var n in new[] { 1, 2, 4 })
        {
            var dir = _dir[$"tp{n}"];
            using var launcher = LocalWorkerLauncher.Start("dotnet", _ => [s_workerDll, "save", "--dir", dir, "--saves", "2", "--extra-mb", "48"], n, dir + "/coord");
            var results = await launcher.WaitAllAsync(TimeSpan.FromSeconds(120));
            Assert.All(results, r => Assert.True(r.Succeeded, r.StandardOutput + r.StandardError));
            var last = results[0].StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last(l => l.StartsWith("SAVED", StringComparison.Ordinal));
            var ms = double.Parse(last[(last.IndexOf("ms=", StringComparison.Ordinal) + 3)..], System.Globalization.CultureInfo.InvariantCulture);
            var bytes = Directory.EnumerateFiles(dir, "ckpt-2.data-*").Sum(f => new FileInfo(f).Length);
            output.WriteLine($"workers={n}: {bytes / 1e6:0.0} MB in {ms:0.0} ms = {bytes / ms / 1e6:0.00} GB/s aggregate");
        }
    }

    private void AssertNotPublished(string name)
    {
        Assert.False(File.Exists(_dir[$"ckpts/{name}.index"]));
        Assert.Empty(Directory.EnumerateFiles(_dir["ckpts"], name + ".data-*"));
        AssertNoTemporaries(name);
    }

    private void AssertNoTemporaries(string name)
    {
        Assert.False(Directory.Exists(_dir[$"ckpts/{name}_temp"]), "temporary part directory left behind");
        Assert.Empty(Directory.EnumerateFiles(_dir["ckpts"], "*tempstate*"));
        if (Directory.Exists(_dir["coord"]))
        {
            Assert.Empty(Directory.EnumerateFiles(_dir["coord"], "*.rank-*"));
            Assert.Empty(Directory.EnumerateFiles(_dir["coord"], "*.tmp-*"));
        }
    }
}

using CheckpointGpu.Distributed.Variables;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using CheckpointGpu.Devices;
using CheckpointGpu.Distributed;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;

namespace CheckpointGpu.Benchmarks.EndToEnd;

/// <summary>
/// <c>e2e --workers 1,2,4 --gib G [--device cpu|opencl] [--dir D] [--repeats R] [--modes sync,async]</c>: aggregate
/// durable save throughput of a multi-worker checkpoint (<see cref="CheckpointOptions.MultiWorker"/>) against a
/// single-process save of the same model, for each mode: <c>sync</c> = <see cref="Checkpoint.Save(string, CheckpointOptions?)"/>
/// (the synchronous writer), <c>async</c> = <see cref="Checkpoint.SaveAsync"/> through the IO pipeline, timed from the
/// call to <see cref="SaveHandle.Completion"/> (merged and published).
/// </summary>
/// <remarks>
/// Model parallelism: the model of <see cref="EndToEndBenchmark.ModelSizes"/> (float32, G GiB in total) is split over
/// the N workers largest-tensor-first to the least-loaded rank; each worker allocates only its own variables (placed on
/// its rank with <see cref="PlacementOwnership"/>) and tracks the others as <see cref="RemoteVariable"/> placeholders,
/// so every worker's object graph is identical. Workers are this executable in the hidden <c>e2e-worker</c> mode,
/// started by <see cref="LocalWorkerLauncher"/>. Before every save all ranks meet at a filesystem barrier, so the
/// chief's clock (start of <c>Save</c> → returned, i.e. merged and published) does not include process start-up or
/// allocation skew. One untimed warm-up save, then R timed saves with fresh prefixes (<c>mw-N-2</c>, …).
/// </remarks>
public static class MultiWorkerBenchmark
{
    private const double GB = 1e9;
    private const string WorkerMode = "e2e-worker";

    // ==================================================================== parent

    public static async Task<int> RunAsync(string[] args)
    {
        var gib = double.Parse(Arg(args, "--gib") ?? "0.5", CultureInfo.InvariantCulture);
        var device = (Arg(args, "--device") ?? "cpu").ToLowerInvariant();
        var root = Path.GetFullPath(Arg(args, "--dir") ?? Path.Combine(Directory.GetCurrentDirectory(), "e2e-bench"));
        var repeats = int.Parse(Arg(args, "--repeats") ?? "3", CultureInfo.InvariantCulture);
        var counts = (Arg(args, "--workers") ?? "1,2,4").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        var modes = (Arg(args, "--modes") ?? "sync,async").Split(',');
        var coordinations = (Arg(args, "--coordination") ?? "fs").Split(',');
        if (coordinations.Any(c => c is not ("fs" or "mpi"))) throw new ArgumentException("--coordination takes fs, mpi or both (comma-separated)");
        if (modes.Any(m => m is not ("sync" or "async"))) throw new ArgumentException("--modes takes sync, async or both (comma-separated)");
        var totalBytes = (long)(gib * (1L << 30));
        // A private scratch directory under D, removed at the end whatever happens.
        var dir = Path.Combine(root, "mw-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        var sizes = EndToEndBenchmark.ModelSizes(totalBytes);
        Info($"multi-worker: {sizes.Length} float32 tensors, {sizes.Sum()} bytes; workers {string.Join(",", counts)}; modes {string.Join(",", modes)}; {repeats} repeats; dir {dir}");
        try
        {
            // The limit, in the same run: fio O_DIRECT sequential write + fsync, one job per worker (1 for the single process).
            var fio = new Dictionary<int, double>();
            foreach (var jobs in counts.Append(1).Distinct().Order())
            {
                var times = new List<double>();
                for (var i = 0; i < repeats; i++) times.Add(FioWrite(dir, sizes.Sum(), jobs));
                fio[jobs] = sizes.Sum() / Median(times) / GB;
                Emit(new() { ["name"] = "fio_write_odirect_fsync", ["jobs"] = jobs, ["bytes"] = sizes.Sum(), ["seconds"] = Math.Round(Median(times), 4),
                    ["gbps"] = Math.Round(fio[jobs], 3), ["seconds_all"] = times.Select(t => Math.Round(t, 4)).ToArray() });
            }
            foreach (var mode in modes) await RunModeAsync(mode, device, gib, sizes, repeats, counts, dir, fio, coordinations);
            if (coordinations.Contains("mpi"))
                foreach (var n in counts) await MpiFloorAsync(n);
            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task RunModeAsync(string mode, string device, double gib, long[] sizes, int repeats, int[] counts, string dir, Dictionary<int, double> fio, string[] coordinations)
    {
        var async = mode == "async";
        {
            // ---- single process: the whole model in one process, same write path as the workers, no coordination
            double singleSeconds; long singleBytes;
            {
                using var acc = Accelerator.Create(Kind(device));
                using var model = new BenchModel(acc, sizes, rank: 0, owners: new int[sizes.Length]);
                var prefixBase = Path.Combine(dir, $"single-{mode}");
                var (last, _) = await SaveAsync(model.Checkpoint, prefixBase, null, async); // warm-up
                var times = new List<double>();
                for (var i = 0; i < repeats; i++)
                {
                    var sw = Stopwatch.StartNew();
                    var (prefix, _) = await SaveAsync(model.Checkpoint, prefixBase, null, async);
                    times.Add(sw.Elapsed.TotalSeconds);
                    BundleCommit.DeleteCheckpoint(last);
                    last = prefix;
                }
                singleBytes = VerifyAndMeasure(last, sizes.Length);
                BundleCommit.DeleteCheckpoint(last);
                singleSeconds = Median(times);
                Emit(new() { ["name"] = "single_process_save", ["mode"] = mode, ["device"] = device, ["workers"] = 1, ["bytes"] = singleBytes,
                    ["seconds"] = Math.Round(singleSeconds, 4), ["gbps"] = Math.Round(singleBytes / singleSeconds / GB, 3),
                    ["ratio_vs_fio"] = Math.Round(singleBytes / singleSeconds / GB / fio[1], 3), ["repeats"] = repeats,
                    ["seconds_all"] = times.Select(t => Math.Round(t, 4)).ToArray() });
            }
            var singleGbps = singleBytes / singleSeconds / GB;

            // ---- N worker processes
            var (exe, lead) = SelfCommand();
            foreach (var coordination in coordinations)
            foreach (var n in counts)
            {
                var name = $"mw-{mode}-{coordination}-{n}";
                var coord = Path.Combine(dir, $"coord-{mode}-{n}");
                var workerArgs = lead.Concat([WorkerMode, "--gib", gib.ToString("R", CultureInfo.InvariantCulture), "--device", device, "--dir", dir,
                    "--repeats", repeats.ToString(CultureInfo.InvariantCulture), "--name", name, "--mode", mode, .. coordination == "mpi" ? new[] { "--mpi" } : []]).ToArray();
                if (coordination == "mpi")
                {
                    // MPICH's launcher; the ranks coordinate by MPI collectives (Checkpoint.Gpu.Mpi).
                    var psi = new ProcessStartInfo("mpiexec") { RedirectStandardOutput = true, RedirectStandardError = true };
                    foreach (var a in (string[])["-n", n.ToString(CultureInfo.InvariantCulture), exe, .. workerArgs]) psi.ArgumentList.Add(a);
                    using var p = Process.Start(psi)!;
                    var errTask = p.StandardError.ReadToEndAsync();
                    _ = await p.StandardOutput.ReadToEndAsync();
                    await p.WaitForExitAsync();
                    if (p.ExitCode != 0) throw new InvalidOperationException($"mpiexec -n {n} failed (exit {p.ExitCode}): {await errTask}");
                }
                else
                {
                    using var launcher = LocalWorkerLauncher.Start(exe, _ => workerArgs, n, coord);
                    var results = await launcher.WaitAllAsync(TimeSpan.FromMinutes(20));
                    foreach (var r in results.Where(r => !r.Succeeded))
                        throw new InvalidOperationException($"worker {r.Rank} of {n} failed (exit {r.ExitCode}, killed {r.Killed}):\n{r.StandardOutput}\n{r.StandardError}");
                }
                // Every rank writes its SAVED lines to a file (mpiexec interleaves the ranks' standard outputs).
                var perRank = Enumerable.Range(0, n).Select(r => ParseSaved(File.ReadAllText(RankFile(dir, name, r)))).ToArray();
                if (perRank.Any(s => s.Count != repeats + 1))
                    throw new InvalidOperationException($"expected {repeats + 1} SAVED lines per worker, got [{string.Join(",", perRank.Select(s => s.Count))}]");
                var chief = perRank[0].Skip(1).Select(s => s.Seconds).ToList(); // drop the warm-up
                var last = perRank[0][^1].Prefix;
                if (perRank.Any(s => s[^1].Prefix != last)) throw new InvalidOperationException("workers disagree on the last prefix");
                var bytes = VerifyAndMeasure(last, sizes.Length);
                BundleCommit.DeleteCheckpoint(last);
                var seconds = Median(chief);
                var gbps = bytes / seconds / GB;
                // Coordination per checkpoint: from the last rank's part being durable to the chief's publish, and to the
                // last rank knowing the verdict (Stopwatch timestamps: CLOCK_MONOTONIC, shared by the processes of this host).
                // Split: transport = reports reaching the chief (last part durable → gathered) + the verdict reaching every
                // rank (published → last rank knows); merge = the chief's merge and publish in between (the same I/O for both).
                var commitMs = new List<double>();
                var allMs = new List<double>();
                var transportMs = new List<double>();
                var mergeMs = new List<double>();
                static double Ms2(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
                for (var k = 1; k <= repeats; k++)
                {
                    var lastPart = perRank.Max(s => s[k].PartTs);
                    var lastKnows = perRank.Max(s => s[k].VerdictTs);
                    var chiefSave = perRank[0][k];
                    commitMs.Add(Ms2(chiefSave.PublishedTs - lastPart));
                    allMs.Add(Ms2(lastKnows - lastPart));
                    transportMs.Add(Ms2(chiefSave.GatheredTs - lastPart) + Ms2(lastKnows - chiefSave.PublishedTs));
                    mergeMs.Add(Ms2(chiefSave.PublishedTs - chiefSave.GatheredTs));
                }
                var row = new Dictionary<string, object> { ["name"] = "multiworker_save", ["coordination"] = coordination, ["mode"] = mode, ["device"] = device, ["workers"] = n, ["bytes"] = bytes,
                    ["coord_to_commit_ms"] = Math.Round(Median(commitMs), 3), ["coord_to_all_ranks_ms"] = Math.Round(Median(allMs), 3),
                    ["coord_transport_ms"] = Math.Round(Median(transportMs), 3), ["coord_merge_ms"] = Math.Round(Median(mergeMs), 3),
                    ["coord_transport_ms_all"] = transportMs.Select(t => Math.Round(t, 3)).ToArray(),
                    ["coord_to_commit_ms_all"] = commitMs.Select(t => Math.Round(t, 3)).ToArray(), ["coord_to_all_ranks_ms_all"] = allMs.Select(t => Math.Round(t, 3)).ToArray(),
                    ["seconds"] = Math.Round(seconds, 4), ["gbps"] = Math.Round(gbps, 3), ["ratio_vs_single"] = Math.Round(gbps / singleGbps, 3),
                    ["ratio_vs_fio_jobs"] = Math.Round(gbps / fio[n], 3),
                    ["single_gbps"] = Math.Round(singleGbps, 3), ["repeats"] = repeats,
                    ["seconds_all"] = chief.Select(t => Math.Round(t, 4)).ToArray(),
                    ["rank_median_seconds"] = perRank.Select(s => Math.Round(Median(s.Skip(1).Select(x => x.Seconds).ToList()), 4)).ToArray() };
                if (async)
                {
                    row["chief_stream_median_seconds"] = Math.Round(Median(perRank[0].Skip(1).Select(x => x.Stream).ToList()), 4);
                    row["chief_commit_median_seconds"] = Math.Round(Median(perRank[0].Skip(1).Select(x => x.Commit).ToList()), 4);
                }
                Emit(row);
            }
        }
    }

    /// <summary>One numbered save: <see cref="Checkpoint.Save(string, CheckpointOptions?)"/>, or <see cref="Checkpoint.SaveAsync"/> awaited to <see cref="SaveHandle.Completion"/>.</summary>
    /// <returns>The prefix, and for async the handle (its durations split the part write from the coordination).</returns>
    private static async Task<(string Prefix, SaveHandle? Handle)> SaveAsync(Checkpoint checkpoint, string prefixBase, CheckpointOptions? options, bool async)
    {
        if (!async) return (checkpoint.Save(prefixBase, options), null);
        var sw = Stopwatch.StartNew();
        var handle = await checkpoint.SaveAsync(prefixBase, options);
        var queued = sw.Elapsed.TotalMilliseconds;
        await handle.Snapshotted;
        var snap = sw.Elapsed.TotalMilliseconds;
        await handle.Completion;
        Info(string.Create(CultureInfo.InvariantCulture, $"queued {queued:0.0} ms, snapshotted {snap:0.0} ms, completed {sw.Elapsed.TotalMilliseconds:0.0} ms; stream {handle.StreamDuration.TotalMilliseconds:0.0} total {handle.TotalDuration.TotalMilliseconds:0.0}"));
        return (handle.CheckpointPrefix, handle);
    }

    /// <summary>
    /// fio with <paramref name="jobs"/> concurrent jobs, each writing its own file of total/jobs bytes with O_DIRECT and
    /// an fsync at the end; returns the seconds of the slowest job (its runtime includes the fsync), i.e. the aggregate time.
    /// </summary>
    private static double FioWrite(string dir, long total, int jobs)
    {
        var fioDir = Path.Combine(dir, "fio");
        Directory.CreateDirectory(fioDir);
        var per = total / jobs / (1 << 20) * (1 << 20);
        string[] args = ["--name=mwwrite", $"--directory={fioDir}", "--rw=write", "--bs=8M", $"--size={per}", "--direct=1", "--ioengine=psync",
            "--end_fsync=1", $"--numjobs={jobs}", "--output-format=json"];
        Info("fio command: fio " + string.Join(' ', args));
        var psi = new ProcessStartInfo("fio") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var json = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Directory.Delete(fioDir, recursive: true);
        if (p.ExitCode != 0) throw new InvalidOperationException($"fio exited with {p.ExitCode}: {p.StandardError.ReadToEnd()}");
        using var doc = JsonDocument.Parse(json[json.IndexOf('{')..]);
        var slowest = doc.RootElement.GetProperty("jobs").EnumerateArray().Max(j => j.GetProperty("job_runtime").GetDouble());
        return slowest / 1000 * total / (per * jobs); // scaled to the model's exact byte count
    }

    /// <summary>Opens the checkpoint, checks every layer is present, verifies every entry (CRC); returns the data files' total size.</summary>
    private static long VerifyAndMeasure(string prefix, int layers)
    {
        using var reader = TensorBundleReader.Open(prefix);
        for (var i = 0; i < layers; i++)
            if (!reader.TryGetEntry(BenchModel.Key(i), out _)) throw new InvalidOperationException($"{prefix}: entry '{BenchModel.Key(i)}' is missing");
        foreach (var e in reader.Entries) reader.VerifyEntry(e); // throws CheckpointFormatException on a bad entry
        long bytes = 0;
        for (var s = 0; s < reader.Header.ShardCount; s++) bytes += new FileInfo(reader.GetDataFilePath(s)).Length;
        Info($"verified {prefix}: {reader.Entries.Count} entries, {reader.Header.ShardCount} data files, {bytes} bytes");
        return bytes;
    }

    private static List<(string Prefix, double Seconds, double Stream, double Commit, long PartTs, long GatheredTs, long PublishedTs, long VerdictTs)> ParseSaved(string output) =>
        output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => l.StartsWith("SAVED ", StringComparison.Ordinal))
            .Select(l => l.Split(' '))
            .Select(p => (p[1], Ms(p, "ms="), Ms(p, "stream_ms="), Ms(p, "commit_ms="), Ts(p, "part_ts="), Ts(p, "gathered_ts="), Ts(p, "published_ts="), Ts(p, "verdict_ts=")))
            .ToList();

    private static long Ts(string[] fields, string name) =>
        fields.FirstOrDefault(f => f.StartsWith(name, StringComparison.Ordinal)) is { } f ? long.Parse(f[name.Length..], CultureInfo.InvariantCulture) : 0;

    private static string RankFile(string dir, string name, int rank) => Path.Combine(dir, string.Create(CultureInfo.InvariantCulture, $"{name}.rank-{rank}.out"));

    private static double Ms(string[] fields, string name) =>
        fields.FirstOrDefault(f => f.StartsWith(name, StringComparison.Ordinal)) is { } f ? double.Parse(f[name.Length..], CultureInfo.InvariantCulture) / 1000 : double.NaN;

    /// <summary>How to start this program again: the apphost directly, or <c>dotnet &lt;dll&gt;</c>.</summary>
    private static (string Exe, string[] Lead) SelfCommand()
    {
        var path = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        return Path.GetFileNameWithoutExtension(path) == "dotnet" ? (path, [typeof(MultiWorkerBenchmark).Assembly.Location]) : (path, []);
    }

    /// <summary>
    /// The MPI coordination's own cost, without disk: N ranks run 300 rounds of <see cref="Mpi.MpiCoordination.Gather"/>
    /// (each report carrying a 4 KiB stand-in for a part index) and <see cref="Mpi.MpiCoordination.ShareVerdict"/>, a
    /// barrier before each; the chief times gather start → every report in hand, and rank r times its verdict's arrival.
    /// </summary>
    private static async Task MpiFloorAsync(int n)
    {
        var (exe, lead) = SelfCommand();
        var psi = new ProcessStartInfo("mpiexec") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (string[])["-n", n.ToString(CultureInfo.InvariantCulture), exe, .. lead, "e2e-mpi-floor"]) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var errTask = p.StandardError.ReadToEndAsync();
        var output = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0) throw new InvalidOperationException($"mpiexec -n {n} e2e-mpi-floor failed (exit {p.ExitCode}): {await errTask}");
        var line = output.Split('\n').First(l => l.StartsWith("FLOOR ", StringComparison.Ordinal));
        var ms = line[6..].Split(' ').Select(x => double.Parse(x, CultureInfo.InvariantCulture)).ToList();
        var sorted = ms.Order().ToArray();
        Emit(new() { ["name"] = "mpi_coordination_floor", ["workers"] = n, ["rounds"] = ms.Count, ["median_ms"] = Math.Round(Median(ms), 4),
            ["p90_ms"] = Math.Round(sorted[(int)(sorted.Length * 0.9)], 4), ["max_ms"] = Math.Round(sorted[^1], 4) });
    }

    /// <summary>One rank of <see cref="MpiFloorAsync"/>: prints <c>FLOOR ms…</c> on the chief (gather + verdict broadcast per round).</summary>
    public static Task<int> RunMpiFloorAsync(string[] args)
    {
        _ = args;
        using var mpi = Mpi.MpiCoordination.Initialize();
        var index = new byte[4096];
        var times = new List<double>();
        for (var k = 1; k <= 301; k++)
        {
            var round = new CoordinationRound("/floor/ckpt", k, TimeSpan.FromMinutes(1), WaitForVerdict: true, JobId: null) { Sequence = k };
            mpi.Barrier(TimeSpan.FromMinutes(1));
            var start = Stopwatch.GetTimestamp();
            var reports = mpi.Gather(round, new WorkerReport { Rank = mpi.Rank, WorldSize = mpi.WorldSize, Succeeded = true, Prefix = "/floor/ckpt", PartIndex = index });
            _ = mpi.ShareVerdict(round, mpi.Rank == 0 ? new CoordinationVerdict { Published = reports!.All(r => r is { Succeeded: true }) } : null);
            if (k > 1) times.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);   // round 1 is the warm-up
        }
        // Every rank's slowest view is what "every rank knows" means: reduce by gathering the per-round times at the chief.
        var all = mpi.Gather(new CoordinationRound("/floor/times", 1, TimeSpan.FromMinutes(1), true, null) { Sequence = 302 },
            new WorkerReport { Rank = mpi.Rank, WorldSize = mpi.WorldSize, Succeeded = true, Prefix = "/floor/times",
                PartIndex = System.Text.Encoding.UTF8.GetBytes(string.Join(' ', times.Select(t => t.ToString("R", CultureInfo.InvariantCulture)))) });
        _ = mpi.ShareVerdict(new CoordinationRound("/floor/times", 1, TimeSpan.FromMinutes(1), true, null) { Sequence = 302 }, mpi.Rank == 0 ? new CoordinationVerdict { Published = true } : null);
        if (mpi.Rank == 0)
        {
            var perRank = all!.Select(r => System.Text.Encoding.UTF8.GetString(r!.PartIndex.Span).Split(' ').Select(x => double.Parse(x, CultureInfo.InvariantCulture)).ToArray()).ToArray();
            var slowest = Enumerable.Range(0, times.Count).Select(i => perRank.Max(r => r[i]));
            Console.WriteLine("FLOOR " + string.Join(' ', slowest.Select(t => t.ToString("R", CultureInfo.InvariantCulture))));
        }
        return Task.FromResult(0);
    }

    // ==================================================================== worker (hidden mode)

    /// <summary><c>e2e-worker --gib G --device D --dir D --repeats R --name NAME --mode sync|async</c>, rank etc. from the environment.</summary>
    public static async Task<int> RunWorkerAsync(string[] args)
    {
        using var mpi = args.Contains("--mpi") ? Mpi.MpiCoordination.Initialize() : null;
        var worker = mpi is not null ? new WorkerContext(mpi)
            : WorkerContext.FromEnvironment() ?? throw new InvalidOperationException("e2e-worker runs under LocalWorkerLauncher (CKPT_* environment) or mpiexec (--mpi)");
        var gib = double.Parse(Arg(args, "--gib")!, CultureInfo.InvariantCulture);
        var dir = Arg(args, "--dir")!;
        var repeats = int.Parse(Arg(args, "--repeats")!, CultureInfo.InvariantCulture);
        var name = Arg(args, "--name")!;
        var sizes = EndToEndBenchmark.ModelSizes((long)(gib * (1L << 30)));
        var owners = Owners(sizes, worker.WorldSize);
        using var acc = Accelerator.Create(Kind(Arg(args, "--device") ?? "cpu"));
        using var model = new BenchModel(acc, sizes, worker.Rank, owners);
        var async = Arg(args, "--mode") == "async";
        long partTs = 0, gatheredTs = 0, publishedTs = 0, verdictTs = 0;
        void Milestone(CoordinationMilestone m, long ts)
        {
            if (m == CoordinationMilestone.PartDurable) partTs = ts;
            else if (m == CoordinationMilestone.ReportsGathered) gatheredTs = ts;
            else if (m == CoordinationMilestone.Published) publishedTs = ts;
            else verdictTs = ts;
        }
        var options = new CheckpointOptions { MultiWorker = worker.With(ownership: model.Ownership, milestones: Milestone) };
        using var results = new StreamWriter(RankFile(dir, name, worker.Rank));
        var prefixBase = Path.Combine(dir, name);
        var barrier = Path.Combine(dir, $"barrier-{name}-{worker.JobId}");
        Directory.CreateDirectory(barrier);
        string? previous = null;
        for (var k = 0; k <= repeats; k++) // k = 0 is the warm-up
        {
            if (mpi is not null) mpi.Barrier(TimeSpan.FromMinutes(5));
            else Barrier(barrier, k, worker);
            var sw = Stopwatch.StartNew();
            var (prefix, handle) = await SaveAsync(model.Checkpoint, prefixBase, options, async);
            var ms = sw.Elapsed.TotalMilliseconds;
            // Async: stream_ms = the pipeline writing this worker's part; commit_ms = its commit plus the coordination (markers, merge, verdict).
            var phases = handle is null ? "" : string.Create(CultureInfo.InvariantCulture,
                $" stream_ms={handle.StreamDuration.TotalMilliseconds:0.0} commit_ms={(handle.TotalDuration - handle.StreamDuration).TotalMilliseconds:0.0}");
            var line = string.Create(CultureInfo.InvariantCulture, $"SAVED {prefix} ms={ms:0.0}{phases} part_ts={partTs} gathered_ts={gatheredTs} published_ts={publishedTs} verdict_ts={verdictTs}");
            Console.WriteLine(line);
            results.WriteLine(line);
            // The chief owns the merged files; it removes the previous (already published) checkpoint outside the clock.
            if (worker.IsChief && previous is not null) BundleCommit.DeleteCheckpoint(previous);
            previous = prefix;
        }
        if (mpi is not null)
        {
            mpi.Barrier(TimeSpan.FromMinutes(5));
            if (worker.IsChief)
            {
                Directory.Delete(barrier, recursive: true);
                File.Delete(Path.Combine(dir, "checkpoint"));
            }
        }
        else if (worker.IsChief)
        {
            Barrier(barrier, repeats + 1, worker); // everyone is done with the barrier directory
            Directory.Delete(barrier, recursive: true);
            File.Delete(Path.Combine(dir, "checkpoint"));
        }
        else
        {
            Touch(barrier, repeats + 1, worker.Rank);
        }
        return 0;
    }

    /// <summary>Model parallelism: largest tensor first, each to the rank with the fewest bytes (ties to the lowest rank).</summary>
    private static int[] Owners(long[] sizes, int worldSize)
    {
        var owners = new int[sizes.Length];
        var load = new long[worldSize];
        foreach (var i in Enumerable.Range(0, sizes.Length).OrderByDescending(i => sizes[i]).ThenBy(i => i))
        {
            var best = 0;
            for (var r = 1; r < worldSize; r++) if (load[r] < load[best]) best = r;
            owners[i] = best;
            load[best] += sizes[i];
        }
        return owners;
    }

    /// <summary>Every rank drops a file for round <paramref name="round"/> and waits for all N (1 ms polling).</summary>
    private static void Barrier(string directory, int round, WorkerContext worker)
    {
        Touch(directory, round, worker.Rank);
        var deadline = Stopwatch.StartNew();
        while (Directory.EnumerateFiles(directory, $"r{round}.*").Count() < worker.WorldSize)
        {
            if (deadline.Elapsed > TimeSpan.FromMinutes(5)) throw new TimeoutException($"barrier round {round}: not every worker arrived");
            Thread.Sleep(1);
        }
    }

    private static void Touch(string directory, int round, int rank) =>
        File.WriteAllText(Path.Combine(directory, string.Create(CultureInfo.InvariantCulture, $"r{round}.{rank}")), "");

    // ==================================================================== model

    /// <summary>Variables <c>model/layer_i</c>: local ones allocated (and placed on this rank), the others as <see cref="RemoteVariable"/>.</summary>
    private sealed class BenchModel : IDisposable
    {
        private readonly List<Variable> _local = [];

        public BenchModel(Accelerator acc, long[] sizes, int rank, int[] owners)
        {
            var root = new AutoTrackable();
            for (var i = 0; i < sizes.Length; i++)
            {
                var edge = $"layer_{i}";
                var shape = new TensorShape(sizes[i] / 4);
                if (owners[i] == rank)
                {
                    var seed = (byte)(i * 37 + 11);
                    var v = Variable.Create(root, edge, acc, DType.Float, shape, VariableInitializer.FromHost(span => Fill(span, seed)), fullName: edge);
                    Ownership.Place(v, rank);
                    _local.Add(v);
                }
                else
                {
                    root.Track(edge, new RemoteVariable(edge, DType.Float, shape, owners[i]));
                }
            }
            Checkpoint = new Checkpoint(("model", root)) { Log = null };
        }

        public static string Key(int i) => $"model/layer_{i}/.ATTRIBUTES/VARIABLE_VALUE";

        public Checkpoint Checkpoint { get; }

        public PlacementOwnership Ownership { get; } = new();

        private static void Fill(Span<byte> span, byte seed)
        {
            for (var j = 0; j < span.Length; j++) span[j] = (byte)(seed + (j * 131 >> 7));
        }

        public void Dispose()
        {
            Checkpoint.Dispose();
            foreach (var v in _local) v.Dispose();
        }
    }

    // ==================================================================== plumbing

    private static AcceleratorKind Kind(string device) => DeviceKinds.Parse(device);

    private static double Median(List<double> xs)
    {
        var s = xs.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[(s.Length / 2) - 1] + s[s.Length / 2]) / 2;
    }

    private static void Emit(Dictionary<string, object> d) => Console.WriteLine(JsonSerializer.Serialize(d));

    private static void Info(string s) => Console.Error.WriteLine("# " + s);

    private static string? Arg(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}

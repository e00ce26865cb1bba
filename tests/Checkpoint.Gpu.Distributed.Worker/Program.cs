using CheckpointGpu.TestSupport;
using System.Diagnostics;
using System.Globalization;
using CheckpointGpu;
using CheckpointGpu.Devices;
using CheckpointGpu.Distributed;
using CheckpointGpu.Distributed.Worker;
using CheckpointGpu.Format;
using CheckpointGpu.Mpi;
using CheckpointGpu.Pipeline;

// A worker process for the multi-worker tests and demo. Rank, world size and coordination directory come from the
// environment (LocalWorkerLauncher), or, with --mpi, from MPI (mpiexec -n N; coordination by MPI collectives).
// Exit codes: 0 ok, 3 checkpoint aborted, 4 verification failed, 5 MPI unavailable, 1 other error.
var options = ParseArgs(args);
MpiCoordination? mpi = null;
if (options.ContainsKey("mpi"))
{
    try
    {
        mpi = MpiCoordination.Initialize();
    }
    catch (DllNotFoundException ex)
    {
        Console.WriteLine($"MPI UNAVAILABLE: {ex.Message}");
        return 5;
    }
}
var worker = mpi is not null ? new WorkerContext(mpi) : WorkerContext.FromEnvironment() ?? new WorkerContext(0, 1, Path.Combine(options["dir"], "coord"));
if (options.TryGetValue("timeout-s", out var timeoutText)) worker = worker.With(timeout: TimeSpan.FromSeconds(double.Parse(timeoutText, CultureInfo.InvariantCulture)));
using var mpiScope = mpi;
try
{
    using var accelerator = Accelerator.Create(AcceleratorKind.Cpu);
    return options["mode"] switch
    {
        "save" when options.ContainsKey("async") => await SaveAsync(accelerator, worker, options),
        "save" => Save(accelerator, worker, options),
        "restore" => Restore(accelerator, worker, options, mpi),
        "rounds" => Rounds(mpi ?? throw new ArgumentException("rounds needs --mpi")),
        _ => throw new ArgumentException("mode must be save, restore or rounds"),
    };
}
catch (MultiWorkerCheckpointException ex)
{
    Console.WriteLine($"ABORTED rank {worker.Rank}: {ex.Message} missing=[{string.Join(",", ex.MissingRanks)}] failed=[{string.Join(",", ex.FailedRanks)}]");
    return 3;
}
catch (IOException ex)
{
    // This rank's own failure (e.g. an injected one): reported to the chief already; exit normally so MPI finalizes.
    Console.WriteLine($"FAILED rank {worker.Rank}: {ex.Message}");
    return 2;
}

static int Save(Accelerator accelerator, WorkerContext worker, Dictionary<string, string> o)
{
    var rank = worker.Rank;
    var hangRank = Int(o, "hang-rank", -1);
    var failRank = Int(o, "fail-rank", -1);
    var faultSave = Int(o, "fault-save", 1);
    var saveIndex = 0;
    Action? onSave = () =>
    {
        if (saveIndex != faultSave) return;
        if (rank == hangRank) { Console.WriteLine($"SAVING pid={Environment.ProcessId}"); Console.Out.Flush(); Thread.Sleep(Timeout.Infinite); }
        if (rank == failRank) throw new IOException($"injected failure on rank {rank}");
    };
    var parts = EmbeddingParts(worker, o);
    using var model = new WorkerModel(accelerator, parts, (int)Math.Min(worker.WorldSize, WorkerModel.EmbShape[0]), fill: true, onSave);
    if (hangRank >= 0) model.Ownership.Place(model.StateObject, hangRank);
    if (failRank >= 0) model.Ownership.Place(model.StateObject, failRank);
    if (Int(o, "extra-node-rank", -1) == rank) model.Model.Track("extra", new AutoTrackable());
    var blobs = new List<Variable>();
    if (Int(o, "extra-mb", 0) is var mb and > 0)
    {
        var holder = model.Model.Track("blobs", new AutoTrackable());
        for (var i = 0; i < mb; i++)
            blobs.Add(Variable.Create(holder, "b" + i.ToString(CultureInfo.InvariantCulture), accelerator, DType.Float, new TensorShape(256, 1024), VariableInitializer.Constant(i + 0.5f)));
    }
    var context = worker.With(ownership: o.ContainsKey("chief-holds-all") ? new PlacementOwnership() : model.Ownership,
        waitForPublished: o.ContainsKey("no-wait") ? false : null);
    var saves = Int(o, "saves", 1);
    var manager = o.ContainsKey("manager") ? new CheckpointManager(model.Checkpoint, o["dir"], maxToKeep: Int(o, "keep", 2)) : null;
    // --incremental: each worker links the unchanged data files of its own part (issue 14); prints what each save reused.
    if (manager is not null && o.ContainsKey("incremental")) manager.IncrementalSaves = new IncrementalSaveOptions();
    for (var k = 1; k <= saves; k++)
    {
        saveIndex = k;
        if (k == saves && Int(o, "delay-rank", -1) == rank) Thread.Sleep(Int(o, "delay-ms", 0));
        var clock = Stopwatch.StartNew();
        var opts = new CheckpointOptions { MultiWorker = context };
        var prefix = manager is not null ? manager.Save(options: opts)! : model.Checkpoint.Save(Path.Combine(o["dir"], o.GetValueOrDefault("name", "ckpt")), opts);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"SAVED {prefix} ms={clock.Elapsed.TotalMilliseconds:0.0}"));
        if (manager?.LastIncrementalSave is { } r) Console.WriteLine($"INCREMENTAL {prefix} linked={r.ShardsLinked} written={r.ShardsWritten}");
    }
    foreach (var b in blobs) b.Dispose();
    return 0;
}

// The same saves through the IO pipeline (Checkpoint.SaveAsync / CheckpointManager.SaveAsync): each save is queued
// once the previous one is snapshotted, so a save's coordination overlaps the next one's staging; all handles are
// awaited at the end. --hang-rank blocks that rank's part writes inside the pipeline (then prints SAVING), and
// --fail-write-rank fails them, so the faults hit mid-write rather than while planning.
static async Task<int> SaveAsync(Accelerator accelerator, WorkerContext worker, Dictionary<string, string> o)
{
    var rank = worker.Rank;
    var hangRank = Int(o, "hang-rank", -1);
    var failRank = Int(o, "fail-rank", -1);
    var failWriteRank = Int(o, "fail-write-rank", -1);
    var faultSave = Int(o, "fault-save", 1);
    var saveIndex = 0;
    Action? onSave = () =>
    {
        if (saveIndex == faultSave && rank == failRank) throw new IOException($"injected failure on rank {rank}");
    };
    var parts = EmbeddingParts(worker, o);
    using var model = new WorkerModel(accelerator, parts, (int)Math.Min(worker.WorldSize, WorkerModel.EmbShape[0]), fill: true, onSave);
    if (hangRank >= 0) model.Ownership.Place(model.StateObject, hangRank);
    if (failRank >= 0) model.Ownership.Place(model.StateObject, failRank);
    if (failWriteRank >= 0) model.Ownership.Place(model.StateObject, failWriteRank);
    if (Int(o, "extra-node-rank", -1) == rank) model.Model.Track("extra", new AutoTrackable());
    var name = o.GetValueOrDefault("name", "ckpt");
    var faultyPart = $"{name}-{faultSave.ToString(CultureInfo.InvariantCulture)}_temp";
    var announced = 0;
    var pending = new List<(SaveHandle Handle, string Prefix, Stopwatch Clock)>();
    var storage = new FaultInjectingShardStorage(LocalShardStorage.Instance)
    {
        BlockWriteWhen = rank == hangRank ? path => path.Contains(faultyPart, StringComparison.Ordinal) : null,
        FailWriteWhen = rank == failWriteRank ? path => path.Contains(faultyPart, StringComparison.Ordinal) : null,
        // The test kills this process once it prints SAVING: the part's temp files exist, its writes hang.
        // Announced once every earlier save of this worker has completed (reported): a save's completion runs off the
        // ring, so the next save's writes may block before it — killing the process then would lose the earlier report.
        WriteBlocked = path =>
        {
            if (Interlocked.Exchange(ref announced, 1) != 0) return;
            Task[] earlier;
            // The saves before the faulty one (pending is in save order; the faulty save itself may already be listed).
            lock (pending) earlier = [.. pending.Take(faultSave - 1).Select(p => p.Handle.Completion)];
            _ = Task.WhenAll(earlier).ContinueWith(done =>
            {
                Console.WriteLine($"SAVING pid={Environment.ProcessId}");
                Console.Out.Flush();
            }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
        },
    };
    await using var pipeline = new CheckpointPipeline(accelerator, new CheckpointPipelineOptions { Storage = storage, SlotSizeInBytes = 1 << 20, SlotCount = 4 });
    var context = worker.With(ownership: o.ContainsKey("chief-holds-all") ? new PlacementOwnership() : model.Ownership);
    var saves = Int(o, "saves", 1);
    var manager = o.ContainsKey("manager") ? new CheckpointManager(model.Checkpoint, o["dir"], maxToKeep: Int(o, "keep", 2)) : null;
    // --incremental: each worker links the unchanged data files of its own part (issue 14); prints what each save reused.
    if (manager is not null && o.ContainsKey("incremental")) manager.IncrementalSaves = new IncrementalSaveOptions();
    for (var k = 1; k <= saves; k++)
    {
        saveIndex = k;
        if (k == saves && Int(o, "delay-rank", -1) == rank) await Task.Delay(Int(o, "delay-ms", 0));
        var clock = Stopwatch.StartNew();
        var opts = new CheckpointOptions { MultiWorker = context, Pipeline = pipeline };
        var handle = manager is not null ? (await manager.SaveAsync(options: opts))! : await model.Checkpoint.SaveAsync(Path.Combine(o["dir"], name), opts);
        await handle.Snapshotted;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"QUEUED {handle.Prefix} snapshotted ms={clock.Elapsed.TotalMilliseconds:0.0}"));
        // The handle's Prefix is what this worker wrote (its part, or the checkpoint itself when it owns nothing).
        lock (pending) pending.Add((handle, handle.CheckpointPrefix, clock));
    }
    foreach (var (handle, prefix, clock) in pending)
    {
        await handle.Completion;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"SAVED {prefix} ms={clock.Elapsed.TotalMilliseconds:0.0} part={handle.Prefix}"));
    }
    if (manager?.LastIncrementalSave is { } last) Console.WriteLine($"INCREMENTAL {last.Prefix} linked={last.ShardsLinked} written={last.ShardsWritten}");
    return 0;
}

// With MPI, rank 0 reads the index and object graph once and broadcasts them (MpiRestore); each rank reads its values.
static int Restore(Accelerator accelerator, WorkerContext worker, Dictionary<string, string> o, MpiCoordination? mpi)
{
    // Worker r of M holds embedding row slice r of M (when M exceeds the rows, the extra workers hold none).
    var m = worker.WorldSize;
    var count = (int)Math.Min(m, WorkerModel.EmbShape[0]);
    var parts = worker.Rank < count ? new[] { worker.Rank } : [];
    using var model = new WorkerModel(accelerator, parts, count, fill: false);
    var status = mpi is not null ? MpiRestore.Restore(model.Checkpoint, mpi, o["prefix"], TimeSpan.FromSeconds(60)) : model.Checkpoint.Restore(o["prefix"]);
    status.AssertConsumed();
    var bad = new List<string>();
    foreach (var (edge, dtype, shape) in WorkerModel.Variables)
        if (!model.ByEdge[edge].ReadBytes().AsSpan().SequenceEqual(WorkerModel.ExpectedBytes(edge, dtype, shape.ElementCount))) bad.Add(edge);
    foreach (var part in model.Embedding.Parts)
        if (!part.Variable.ReadBytes().AsSpan().SequenceEqual(WorkerModel.ExpectedSliceBytes(part.Slice))) bad.Add("emb:" + part.Slice);
    if (model.Counter[0] != 42) bad.Add("state");
    if (bad.Count > 0)
    {
        Console.WriteLine($"MISMATCH rank {worker.Rank}: {string.Join(", ", bad)}");
        return 4;
    }
    Console.WriteLine($"RESTORED OK rank {worker.Rank} of {m}: {WorkerModel.Variables.Length} variables, emb parts [{string.Join(" ", model.Embedding.Parts.Select(p => p.Slice))}]");
    return 0;
}

// Worker r holds embedding row slice r (of min(N, rows)); with --chief-holds-all the chief holds every slice and, with
// the default PlacementOwnership, writes everything: the other workers own nothing and only report.
// Round order when the chief ends a round on its own thread: round 1 is gathered and decided by the chief's caller
// (every report is in before it gathers), while its failure report for round 2 — queued before round 1's verdict — is
// held back by the MPI thread for round order. Sharing round 1's verdict must then wake the MPI thread to run round 2:
// the chief makes no other MPI call for HoldSeconds, so the other ranks get round 2's verdict quickly only through that wake.
static int Rounds(MpiCoordination mpi)
{
    const int HoldSeconds = 4;
    var timeout = TimeSpan.FromSeconds(30);
    CoordinationRound Round(long k) => new($"/rounds/ckpt-{k}", 1, timeout, WaitForVerdict: true, JobId: null) { Sequence = k };
    WorkerReport Report(long k, bool ok) => new() { Rank = mpi.Rank, WorldSize = mpi.WorldSize, Succeeded = ok, Prefix = $"/rounds/ckpt-{k}", Error = ok ? null : "injected" };
    if (mpi.Rank == 0)
    {
        Thread.Sleep(500);   // every other report is in: the gather completes on this thread
        var reports = mpi.Gather(Round(1), Report(1, true))!;
        if (reports.Any(r => r is not { Succeeded: true })) throw new InvalidOperationException("round 1: a report is missing");
        mpi.ReportFailure(Round(2), Report(2, false));
        var verdict = mpi.ShareVerdict(Round(1), new CoordinationVerdict { Published = true });
        Console.WriteLine($"ROUND 1 published={verdict!.Published}");
        Thread.Sleep(TimeSpan.FromSeconds(HoldSeconds));
    }
    else
    {
        _ = mpi.Gather(Round(1), Report(1, true));
        var first = mpi.ShareVerdict(Round(1), null);
        Console.WriteLine($"ROUND 1 published={first!.Published}");
        _ = mpi.Gather(Round(2), Report(2, true));
        var clock = Stopwatch.StartNew();
        var second = mpi.ShareVerdict(Round(2), null);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"ROUND 2 published={second!.Published} failed_ranks={string.Join(",", second.FailedRanks)} after {clock.Elapsed.TotalSeconds:0.000} s (the chief holds {HoldSeconds} s)"));
    }
    mpi.Barrier(timeout);
    return 0;
}

static int[] EmbeddingParts(WorkerContext worker, Dictionary<string, string> o)
{
    var count = (int)Math.Min(worker.WorldSize, WorkerModel.EmbShape[0]);
    if (o.ContainsKey("chief-holds-all")) return worker.IsChief ? Enumerable.Range(0, count).ToArray() : [];
    return worker.Rank < count ? [worker.Rank] : [];
}

static int Int(Dictionary<string, string> o, string key, int fallback) =>
    o.TryGetValue(key, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;

static Dictionary<string, string> ParseArgs(string[] args)
{
    var d = new Dictionary<string, string>(StringComparer.Ordinal) { ["mode"] = args.Length > 0 ? args[0] : "" };
    for (var i = 1; i < args.Length; i++)
    {
        if (!args[i].StartsWith("--", StringComparison.Ordinal)) continue;
        var key = args[i][2..];
        d[key] = i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal) ? args[++i] : "true";
    }
    return d;
}

using CheckpointGpu.Devices;
using CheckpointGpu.Distributed.Worker;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Distributed.Tests;

/// <summary>
/// The multi-worker merge publishes through the same commit protocol as every other writer: each of its steps (index
/// write and fsync, data renames, index rename, directory fsync) fails in turn through the storage seam, on the
/// synchronous and the asynchronous save, and the previous checkpoint and the state file stay intact with no temporary
/// left (the parts' own commit is the pipeline's, covered with the single-process saves).
/// </summary>
public sealed class MergeCommitFaultTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string, bool> MergeSteps()
    {
        var data = new TheoryData<string, bool>();
        // The merge adopts the parts' durable data files: it creates, writes and flushes only its index.
        foreach (var s in CommitFaults.BundleSteps.Where(s => !s.Name.EndsWith(" data file", StringComparison.Ordinal) && s.Name is not "write data" and not "fsync data"))
        {
            data.Add(s.Name, false);
            data.Add(s.Name, true);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(MergeSteps))]
    public async Task Merge_StepFails_PreviousCheckpointAndStateIntact_NoTemporaries(string stepName, bool async)
    {
        var step = CommitFaults.BundleSteps.Single(s => s.Name == stepName);
        var storage = new FaultInjectingShardStorage(LocalShardStorage.Instance);
        using var accelerator = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new WorkerModel(accelerator, [0], 1, fill: true);
        var io = new CheckpointPipelineOptions { Storage = storage, SlotSizeInBytes = 4096, SlotCount = 2 };
        CheckpointOptions Options() => new() { IO = io, MultiWorker = new WorkerContext(0, 1, _dir["coord"]) { Timeout = TimeSpan.FromSeconds(30) } };
        var ckpts = _dir["ckpts"];
        var prefix = Path.Combine(ckpts, "ckpt");
        var first = model.Checkpoint.Save(prefix, Options());
        var before = CommitFaults.Snapshot(ckpts);
        var state = File.ReadAllBytes(Path.Combine(ckpts, CheckpointStateFile.FileName));

        step.Arm(storage);
        Restrict(storage, p => !p.Contains("_temp", StringComparison.Ordinal));   // the merge's files only, not the part's
        Exception error;
        if (async)
        {
            var handle = await model.Checkpoint.SaveAsync(prefix, Options());
            error = await Assert.ThrowsAnyAsync<Exception>(() => handle.Completion);
        }
        else
        {
            error = Assert.ThrowsAny<Exception>(() => model.Checkpoint.Save(prefix, Options()));
        }
        Assert.Contains("injected", error.ToString(), StringComparison.Ordinal);
        CommitFaults.Disarm(storage);
        CommitFaults.AssertIntact(step.Name, ckpts, first, before, state);
        if (!step.AfterCommitPoint) Assert.False(File.Exists(prefix + "-2.index"), $"[{step.Name}] the failed merge was committed.");
    }

    private static void Restrict(FaultInjectingShardStorage s, Func<string, bool> where)
    {
        static Func<string, bool>? And(Func<string, bool>? f, Func<string, bool> where) => f is null ? null : p => where(p) && f(p);
        s.FailCreateWhen = And(s.FailCreateWhen, where);
        s.FailWriteWhen = And(s.FailWriteWhen, where);
        s.FailFlushWhen = And(s.FailFlushWhen, where);
        s.FailMoveWhen = And(s.FailMoveWhen, where);
        s.FailDeleteWhen = And(s.FailDeleteWhen, where);
        s.FailFlushDirectoryWhen = And(s.FailFlushDirectoryWhen, where);
    }
}

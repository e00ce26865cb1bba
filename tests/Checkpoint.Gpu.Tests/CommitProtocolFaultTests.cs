using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Tests;

/// <summary>
/// The one commit protocol on every core save path: each step (data, fsync, index, fsync, renames, directory fsync, state
/// file, prune) fails in turn through the storage seam, and the previous checkpoint and the state file stay intact with no
/// temporary left — for the synchronous save, the asynchronous save, <see cref="CheckpointManager"/> pruning and
/// <see cref="LoadedCheckpoint.Write"/>.
/// </summary>
public sealed class CommitProtocolFaultTests(CpuFixture fixture) : IClassFixture<CpuFixture>
{
    private readonly Accelerator _cpu = fixture.Accelerator;

    private sealed class Model : AutoTrackable
    {
        public Variable W { get; }
        public Variable B { get; }

        public Model(Accelerator acc, float value)
        {
            W = AddVariable("w", acc, DType.Float, new TensorShape(3000));
            B = AddVariable("b", acc, DType.Int64, new TensorShape(7));
            Fill(value);
        }

        public void Fill(float value)
        {
            W.Assign(Enumerable.Repeat(value, 3000).ToArray().AsSpan());
            B.Assign(Enumerable.Repeat((long)value, 7).ToArray().AsSpan());
        }
    }

    private static (FaultInjectingShardStorage Storage, CheckpointOptions Options) Faulty()
    {
        var storage = new FaultInjectingShardStorage(LocalShardStorage.Instance);
        // A small ring keeps 13 pipelines cheap; several slots per save so the data is written in more than one request.
        var io = new CheckpointPipelineOptions { Storage = storage, SlotSizeInBytes = 4096, SlotCount = 2 };
        return (storage, new CheckpointOptions { IO = io });
    }

    public static TheoryData<string> SaveSteps()
    {
        var data = new TheoryData<string>();
        foreach (var s in CommitFaults.BundleSteps.Concat(CommitFaults.StateSteps)) data.Add(s.Name);
        return data;
    }

    private static CommitFaults.Step StepNamed(string name) =>
        CommitFaults.BundleSteps.Concat(CommitFaults.StateSteps).Append(CommitFaults.PruneStep).Single(s => s.Name == name);

    [Theory]
    [MemberData(nameof(SaveSteps))]
    public void SyncSave_StepFails_PreviousCheckpointAndStateIntact(string stepName)
    {
        var step = StepNamed(stepName);
        using var dir = new TempDir("fault-sync");
        var (storage, options) = Faulty();
        var model = new Model(_cpu, 1f);
        using var checkpoint = new Checkpoint(("model", model)) { Log = null };
        var prefix = Path.Combine(dir.Path, "ckpt");
        var first = checkpoint.Save(prefix, options);
        var before = CommitFaults.Snapshot(dir.Path);
        var state = File.ReadAllBytes(Path.Combine(dir.Path, CheckpointStateFile.FileName));

        model.Fill(2f);
        step.Arm(storage);
        var error = Assert.ThrowsAny<IOException>(() => checkpoint.Save(prefix, options));
        Assert.Contains("injected", error.Message, StringComparison.Ordinal);
        CommitFaults.Disarm(storage);
        CommitFaults.AssertIntact(step.Name, dir.Path, first, before, state);
        if (!step.AfterCommitPoint) Assert.False(File.Exists(BundleNaming.IndexFile(prefix + "-2")), $"[{step.Name}] the failed checkpoint was committed.");

        // The saver is still usable and the next save commits.
        var third = checkpoint.Save(prefix, options);
        Assert.Equal(Path.GetFullPath(third), CheckpointStateFile.LatestCheckpoint(dir.Path));
    }

    [Theory]
    [MemberData(nameof(SaveSteps))]
    public async Task AsyncSave_StepFails_PreviousCheckpointAndStateIntact(string stepName)
    {
        var step = StepNamed(stepName);
        using var dir = new TempDir("fault-async");
        var (storage, options) = Faulty();
        var model = new Model(_cpu, 1f);
        await using var checkpoint = new Checkpoint(("model", model)) { Log = null };
        var prefix = Path.Combine(dir.Path, "ckpt");
        var firstHandle = await checkpoint.SaveAsync(prefix, options);
        await firstHandle.Completion;
        var first = firstHandle.CheckpointPrefix;
        var before = CommitFaults.Snapshot(dir.Path);
        var state = File.ReadAllBytes(Path.Combine(dir.Path, CheckpointStateFile.FileName));

        model.Fill(2f);
        step.Arm(storage);
        var handle = await checkpoint.SaveAsync(prefix, options);
        var error = await Assert.ThrowsAnyAsync<IOException>(() => handle.Completion);
        Assert.Contains("injected", error.Message, StringComparison.Ordinal);
        CommitFaults.Disarm(storage);
        CommitFaults.AssertIntact(step.Name, dir.Path, first, before, state);
        if (!step.AfterCommitPoint) Assert.False(File.Exists(BundleNaming.IndexFile(prefix + "-2")), $"[{step.Name}] the failed checkpoint was committed.");
    }

    [Fact]
    public void ManagerPrune_DeleteFails_StateNamesCompleteCheckpoints_NoTemporaries()
    {
        using var dir = new TempDir("fault-prune");
        var (storage, options) = Faulty();
        var model = new Model(_cpu, 1f);
        using var checkpoint = new Checkpoint(("model", model)) { Log = null };
        var manager = new CheckpointManager(checkpoint, dir.Path, maxToKeep: 1);
        var first = manager.Save(options: options)!;
        var before = CommitFaults.Snapshot(dir.Path);
        var state = File.ReadAllBytes(Path.Combine(dir.Path, CheckpointStateFile.FileName));

        model.Fill(2f);
        CommitFaults.PruneStep.Arm(storage);
        var error = Assert.ThrowsAny<IOException>(() => manager.Save(options: options));
        Assert.Contains("injected", error.Message, StringComparison.Ordinal);
        CommitFaults.Disarm(storage);
        // The prune runs after the state file named the new checkpoint: the old one is intact (its delete failed) and the
        // state file names a complete checkpoint.
        CommitFaults.AssertIntact(CommitFaults.PruneStep.Name, dir.Path, first, before, state);
        Assert.Equal(Path.GetFullPath(manager.LatestCheckpoint!), CheckpointStateFile.LatestCheckpoint(dir.Path));
    }

    [Theory]
    [MemberData(nameof(BundleSteps))]
    public void MirrorWrite_StepFails_SourceIntactNoTemporaries(string stepName)
    {
        var step = StepNamed(stepName);
        using var dir = new TempDir("fault-mirror");
        var model = new Model(_cpu, 3f);
        string source;
        using (var checkpoint = new Checkpoint(("model", model)) { Log = null }) source = checkpoint.Write(Path.Combine(dir.Path, "source"));
        var before = CommitFaults.Snapshot(dir.Path);

        var storage = new FaultInjectingShardStorage(LocalShardStorage.Instance);
        using var mirror = LoadedCheckpoint.Restore(source, _cpu, log: null);
        step.Arm(storage);
        var error = Assert.ThrowsAny<IOException>(() => mirror.Write(Path.Combine(dir.Path, "copy"),
            new CheckpointPipelineOptions { Storage = storage, SlotSizeInBytes = 4096, SlotCount = 2 }));
        Assert.Contains("injected", error.Message, StringComparison.Ordinal);
        CommitFaults.Disarm(storage);
        CommitFaults.AssertIntact(step.Name, dir.Path, source, before, stateBefore: null);
        if (!step.AfterCommitPoint) Assert.False(File.Exists(Path.Combine(dir.Path, "copy.index")));
    }

    public static TheoryData<string> BundleSteps()
    {
        var data = new TheoryData<string>();
        foreach (var s in CommitFaults.BundleSteps) data.Add(s.Name);
        return data;
    }
}

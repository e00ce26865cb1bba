using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Tests;

/// <summary>CheckpointManager retention, restarts, intervals and state-file consistency (spec §8).</summary>
public sealed class CheckpointManagerTests : IClassFixture<CpuFixture>
{
    private readonly Accelerator _cpu;

    public CheckpointManagerTests(CpuFixture fixture) { _cpu = fixture.Accelerator; }

    private sealed class ManualClock(DateTimeOffset start) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = start;
        public override DateTimeOffset GetUtcNow() => Now;
        public void Advance(TimeSpan span) => Now += span;
    }

    private sealed class Model : AutoTrackable
    {
        public Variable W { get; }
        public Model(Accelerator acc) { W = AddVariable("w", acc, DType.Float, new TensorShape(2)); }
    }

    private Checkpoint NewCheckpoint(out Model model)
    {
        model = new Model(_cpu);
        return new Checkpoint(("model", model)) { Log = null };
    }

    private static double Seconds(DateTimeOffset t) => (t - DateTimeOffset.UnixEpoch).TotalSeconds;

    private static string[] Files(TempDir dir) => Directory.GetFiles(dir.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;

    [Fact]
    public void MaxToKeep_DeletesOldestAfterNewIsComplete_StateListsKept()
    {
        using var dir = new TempDir("mgr");
        var clock = new ManualClock(DateTimeOffset.FromUnixTimeSeconds(1_700_000_000));
        using var ckpt = NewCheckpoint(out var model);
        var manager = new CheckpointManager(ckpt, dir.Path, maxToKeep: 2, timeProvider: clock);
        for (var i = 0; i < 4; i++)
        {
            clock.Advance(TimeSpan.FromSeconds(10));
            Assert.Equal(Path.Combine(dir.Path, $"ckpt-{i + 1}"), manager.Save());
        }
        Assert.Equal([Path.Combine(dir.Path, "ckpt-3"), Path.Combine(dir.Path, "ckpt-4")], manager.Checkpoints);
        // checkpoint.lock: the manager's one-saver-per-directory lock file (CheckpointDirectoryLock).
        Assert.Equal(["checkpoint", "checkpoint.lock", "ckpt-3.data-00000-of-00001", "ckpt-3.index", "ckpt-4.data-00000-of-00001", "ckpt-4.index"], Files(dir));
        var state = CheckpointStateFile.Read(dir.Path)!;
        Assert.Equal("ckpt-4", state.ModelCheckpointPath);
        Assert.Equal(["ckpt-3", "ckpt-4"], state.AllModelCheckpointPaths);
        Assert.Equal([1_700_000_030.0, 1_700_000_040.0], state.AllModelCheckpointTimestamps);
        Assert.Equal(1_699_999_999.0, state.LastPreservedTimestamp);     // construction time − 1 s
        model.W.Dispose();
    }

    [Fact]
    public void Restart_NewManagerRecoversState_ContinuesNumberingAfterRestore()
    {
        using var dir = new TempDir("mgr");
        var clock = new ManualClock(DateTimeOffset.FromUnixTimeSeconds(1_700_000_000));
        {
            using var ckpt = NewCheckpoint(out var model);
            model.W.Assign<float>([1f, 2f]);
            var manager = new CheckpointManager(ckpt, dir.Path, maxToKeep: 3, timeProvider: clock);
            for (var i = 0; i < 3; i++) { clock.Advance(TimeSpan.FromMinutes(1)); manager.Save(); }
            model.W.Dispose();
        }
        {
            // "Process restart": a fresh tree and manager on the same directory.
            using var ckpt = NewCheckpoint(out var model);
            var manager = new CheckpointManager(ckpt, dir.Path, maxToKeep: 3, timeProvider: clock);
            Assert.Equal(Path.Combine(dir.Path, "ckpt-3"), manager.LatestCheckpoint);
            Assert.Equal(3, manager.Checkpoints.Count);
            Assert.Equal(Path.Combine(dir.Path, "ckpt-3"), manager.RestoreOrInitialize());
            Assert.Equal([1f, 2f], model.W.Read<float>());
            clock.Advance(TimeSpan.FromMinutes(1));
            Assert.Equal(Path.Combine(dir.Path, "ckpt-4"), manager.Save());
            Assert.Equal(["ckpt-2", "ckpt-3", "ckpt-4"], manager.Checkpoints.Select(Path.GetFileName));
            Assert.False(File.Exists(Path.Combine(dir.Path, "ckpt-1.index")));
            model.W.Dispose();
        }
        {
            // Restart without restoring: the counter starts over and ckpt-1 is overwritten, moving to the newest slot.
            using var ckpt = NewCheckpoint(out var model);
            var manager = new CheckpointManager(ckpt, dir.Path, maxToKeep: 3, timeProvider: clock);
            clock.Advance(TimeSpan.FromMinutes(1));
            Assert.Equal(Path.Combine(dir.Path, "ckpt-1"), manager.Save());
            Assert.Equal(["ckpt-3", "ckpt-4", "ckpt-1"], manager.Checkpoints.Select(Path.GetFileName));
            var state = CheckpointStateFile.Read(dir.Path)!;
            Assert.Equal("ckpt-1", state.ModelCheckpointPath);
            Assert.Equal(["ckpt-3", "ckpt-4", "ckpt-1"], state.AllModelCheckpointPaths);
            model.W.Dispose();
        }
    }

    [Fact]
    public void KeepCheckpointEvery_PreservesOnePerInterval_NeverDeleted_NotListed()
    {
        using var dir = new TempDir("mgr");
        var clock = new ManualClock(DateTimeOffset.FromUnixTimeSeconds(1_000_000));
        using var ckpt = NewCheckpoint(out var model);
        var manager = new CheckpointManager(ckpt, dir.Path, maxToKeep: 1, keepCheckpointEvery: TimeSpan.FromHours(1), timeProvider: clock);
        // Saves at +30 min, +60, +90, +120 (from construction); last preserved starts at construction − 1 s.
        for (var i = 0; i < 4; i++) { clock.Advance(TimeSpan.FromMinutes(30)); manager.Save(); }
        // ckpt-1 (+30 min) is younger than 1 h after the start → deleted; ckpt-2 (+60 min, ≥ start−1s+1h) preserved;
        // ckpt-3 (+90) is < 1 h after ckpt-2 → deleted; ckpt-4 is the managed one.
        Assert.False(File.Exists(Path.Combine(dir.Path, "ckpt-1.index")));
        Assert.True(File.Exists(Path.Combine(dir.Path, "ckpt-2.index")));
        Assert.False(File.Exists(Path.Combine(dir.Path, "ckpt-3.index")));
        Assert.Equal(["ckpt-4"], manager.Checkpoints.Select(Path.GetFileName));
        var state = CheckpointStateFile.Read(dir.Path)!;
        Assert.Equal(Seconds(DateTimeOffset.FromUnixTimeSeconds(1_000_000).AddMinutes(60)), state.LastPreservedTimestamp);
        Assert.Equal(["ckpt-4"], state.AllModelCheckpointPaths);
        model.W.Dispose();
    }

    [Fact]
    public void CheckpointInterval_SkipsUntilStepAdvancedEnough()
    {
        using var dir = new TempDir("mgr");
        long step = 0;
        using var ckpt = NewCheckpoint(out var model);
        var manager = new CheckpointManager(ckpt, dir.Path, maxToKeep: null, stepCounter: () => step, checkpointInterval: 10);
        Assert.NotNull(manager.Save());        // step 0: first save
        step = 5;
        Assert.Null(manager.Save());
        Assert.NotNull(manager.Save(checkInterval: false));
        Assert.Null(manager.Save(checkInterval: false));   // same step twice
        step = 14;
        Assert.Null(manager.Save());
        step = 15;
        Assert.Equal(Path.Combine(dir.Path, "ckpt-3"), manager.Save());
        Assert.Equal(3, manager.Checkpoints.Count);      // maxToKeep null: nothing deleted
        model.W.Dispose();
    }

    [Fact]
    public void Save_ExplicitNumber_AndRestoreOrInitialize_CallsInitializerWhenEmpty()
    {
        using var dir = new TempDir("mgr");
        using var ckpt = NewCheckpoint(out var model);
        var initialized = 0;
        var manager = new CheckpointManager(ckpt, dir.Path, maxToKeep: 5, checkpointName: "model", initialize: () => initialized++);
        Assert.Null(manager.RestoreOrInitialize());
        Assert.Equal(1, initialized);
        Assert.Equal(Path.Combine(dir.Path, "model-1000"), manager.Save(checkpointNumber: 1000));
        Assert.Equal(1L, ckpt.SaveCounter.Read<long>()[0]);   // the counter still counts saves
        model.W.Dispose();
    }

    [Fact]
    public void Constructor_InvalidArguments_Throw()
    {
        using var dir = new TempDir("mgr");
        using var ckpt = NewCheckpoint(out var model);
        Assert.Throws<ArgumentOutOfRangeException>(() => new CheckpointManager(ckpt, dir.Path, maxToKeep: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new CheckpointManager(ckpt, dir.Path, maxToKeep: -2));
        Assert.Throws<ArgumentException>(() => new CheckpointManager(ckpt, dir.Path, maxToKeep: 1, checkpointInterval: 5));
        model.W.Dispose();
    }

    [Fact]
    public void UntimestampedEntries_FromCheckpointSave_AreNeverDeleted()
    {
        using var dir = new TempDir("mgr");
        using var ckpt = NewCheckpoint(out var model);
        ckpt.Save(Path.Combine(dir.Path, "manual"));          // state file without timestamps
        var manager = new CheckpointManager(ckpt, dir.Path, maxToKeep: 1);
        Assert.Empty(manager.Checkpoints);
        Assert.Equal(Path.Combine(dir.Path, "manual-1"), manager.LatestCheckpoint);
        manager.Save();
        manager.Save();
        Assert.True(File.Exists(Path.Combine(dir.Path, "manual-1.index")));
        Assert.Equal(["ckpt-3"], manager.Checkpoints.Select(Path.GetFileName));
        Assert.Equal(["ckpt-3"], CheckpointStateFile.Read(dir.Path)!.AllModelCheckpointPaths);
        model.W.Dispose();
    }

    [CorpusFact]
    public void Recovery_FromTfWrittenStateFile_MatchesTfSemantics()
    {
        using var dir = new TempDir("mgrtf");
        var src = TfCorpus.Case(TestUtil.Keras3Case);
        foreach (var f in Directory.GetFiles(src)) File.Copy(f, Path.Combine(dir.Path, Path.GetFileName(f)));
        using var ckpt = new Checkpoint { Log = null };
        // TF's file: model_checkpoint_path ckpt-1; paths ckpt-9, ckpt-10, ckpt-1 with timestamps after last_preserved.
        var clock = new ManualClock(DateTimeOffset.FromUnixTimeSeconds(1_757_500_000));
        var manager = new CheckpointManager(ckpt, dir.Path, maxToKeep: 3, timeProvider: clock);
        Assert.Equal(Path.Combine(dir.Path, "ckpt-1"), manager.LatestCheckpoint);
        Assert.Equal(["ckpt-9", "ckpt-10", "ckpt-1"], manager.Checkpoints.Select(Path.GetFileName));
        manager.RestoreOrInitialize();
        Assert.Equal(1L, ckpt.SaveCounter.Read<long>()[0]);
        Assert.Equal(Path.Combine(dir.Path, "ckpt-2"), manager.Save());
        Assert.False(File.Exists(Path.Combine(dir.Path, "ckpt-9.index")));
        Assert.False(File.Exists(Path.Combine(dir.Path, "ckpt-9.data-00000-of-00001")));
        Assert.Equal(["ckpt-10", "ckpt-1", "ckpt-2"], CheckpointStateFile.Read(dir.Path)!.AllModelCheckpointPaths);
    }
}

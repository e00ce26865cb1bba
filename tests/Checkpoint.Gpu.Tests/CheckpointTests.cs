using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Tests;

/// <summary>Checkpoint save/write/read/restore semantics (spec §1.2, §1.4, §6.3–6.5, §7.6).</summary>
public sealed class CheckpointTests : IClassFixture<CpuFixture>
{
    private readonly Accelerator _cpu;

    public CheckpointTests(CpuFixture fixture) { _cpu = fixture.Accelerator; }

    private sealed class Holder : AutoTrackable
    {
        public Variable MakeVariable(Accelerator acc, string name, float[] values, string? fullName = null) =>
            AddVariable(name, acc, DType.Float, new TensorShape(values.Length), VariableInitializer.FromValues<float>(values), fullName);
    }

    [Fact]
    public void Save_IncrementsCounterFirst_WritesPrefixN_AndRelativeStateFile()
    {
        using var dir = new TempDir("save");
        var holder = new Holder();
        using var v = holder.MakeVariable(_cpu, "v", [1f, 2f]);
        using var ckpt = new Checkpoint(("model", holder));
        var first = ckpt.Save(dir.File("ckpt"));
        var second = ckpt.Save(dir.File("ckpt"));
        Assert.Equal(dir.File("ckpt-1"), first);
        Assert.Equal(dir.File("ckpt-2"), second);
        Assert.True(File.Exists(dir.File("ckpt-2.index")));
        Assert.True(File.Exists(dir.File("ckpt-1.data-00000-of-00001")));
        // Checkpoint.save writes fields 1–2 only, relative, just the newest path (spec §1.4).
        Assert.Equal("model_checkpoint_path: \"ckpt-2\"\nall_model_checkpoint_paths: \"ckpt-2\"\n", File.ReadAllText(dir.File("checkpoint")));
        Assert.Equal(2L, ckpt.SaveCounter.Read<long>()[0]);
        Assert.True(CheckpointManager.TryGetLatestCheckpoint(dir.Path, out var latest));
        Assert.Equal(Path.GetFullPath(second), latest);
    }

    [Fact]
    public void Save_GraphAndKeys_FollowTfNumberingAndGrammar()
    {
        using var dir = new TempDir("graph");
        var b = new Holder();
        using var bv = b.MakeVariable(_cpu, "w.x/y", [3f]);
        var a = new Holder();
        using var av = a.MakeVariable(_cpu, "kernel", [1f]);
        a.Track("shared", b);
        // kwargs are sorted: "alpha" (a) before "beta" (b) whatever the argument order.
        using var ckpt = new Checkpoint(("beta", b), ("alpha", a));
        var path = ckpt.Save(dir.File("ckpt"));
        using var reader = TensorBundleReader.Open(path);
        var graph = reader.ReadObjectGraph()!;
        // node 0 root: alpha→1, beta→2, save_counter→3; node 1 (a): kernel→4, shared→2 (edge to an already-numbered node)
        Assert.Equal(["alpha", "beta", "save_counter"], graph.Nodes[0].Children.Select(c => c.LocalName));
        Assert.Equal([1, 2, 3], graph.Nodes[0].Children.Select(c => c.NodeId));
        Assert.Equal([("kernel", 4), ("shared", 2)], graph.Nodes[1].Children.Select(c => (c.LocalName, c.NodeId)));
        Assert.Equal(6, graph.Nodes.Count);
        // Escaping: '.' → '..', '/' → '.S'; the shortest (BFS-first) path names the key.
        Assert.Equal("beta/w..x.Sy/.ATTRIBUTES/VARIABLE_VALUE", graph.Nodes[5].Attributes[0].CheckpointKey);
        Assert.Equal("alpha/kernel/.ATTRIBUTES/VARIABLE_VALUE", graph.Nodes[4].Attributes[0].CheckpointKey);
        Assert.Equal("save_counter/.ATTRIBUTES/VARIABLE_VALUE", graph.Nodes[3].Attributes[0].CheckpointKey);
        Assert.Equal("save_counter", graph.Nodes[3].Attributes[0].FullName);
        Assert.All(graph.Nodes, n => Assert.True(n.HasCheckpointValues));
        // Data order: node order (counter, kernel, w.x/y), object graph last.
        var ordered = reader.Entries.Where(e => e.Key.Length > 0).OrderBy(e => e.Offset).Select(e => e.Key).ToArray();
        Assert.Equal(["save_counter/.ATTRIBUTES/VARIABLE_VALUE", "alpha/kernel/.ATTRIBUTES/VARIABLE_VALUE",
            "beta/w..x.Sy/.ATTRIBUTES/VARIABLE_VALUE", CheckpointKeys.ObjectGraph], ordered);
    }

    [Fact]
    public void Write_DoesNotCreateCounterOrStateFile()
    {
        using var dir = new TempDir("write");
        var holder = new Holder();
        using var v = holder.MakeVariable(_cpu, "v", [1f]);
        using var ckpt = new Checkpoint(("model", holder));
        var path = ckpt.Write(dir.File("exact"));
        Assert.Equal(dir.File("exact"), path);
        Assert.False(ckpt.HasSaveCounter);
        Assert.False(File.Exists(dir.File("checkpoint")));
        using var reader = TensorBundleReader.Open(path);
        Assert.False(reader.TryGetEntry("save_counter/.ATTRIBUTES/VARIABLE_VALUE", out _));
    }

    [Fact]
    public void WriteThenRestore_LiveSaveCounterUnmatched_ExistingObjectsAssertionFails()
    {
        using var dir = new TempDir("wr");
        var path = WriteOne(dir, 5f);
        var holder = new Holder();
        using var v = holder.MakeVariable(_cpu, "v", [0f]);
        using var ckpt = new Checkpoint(("model", holder)) { Log = null };
        var status = ckpt.Restore(path);
        Assert.Equal([5f], v.Read<float>());
        var ex = Assert.Throws<CheckpointMismatchException>(() => status.AssertExistingObjectsMatched());
        Assert.Contains(ex.Unmatched, u => u.Contains("save_counter", StringComparison.Ordinal));
        Assert.Throws<CheckpointMismatchException>(() => status.AssertConsumed());
    }

    [Fact]
    public void WriteThenRead_EverythingMatches()
    {
        using var dir = new TempDir("wread");
        var path = WriteOne(dir, 6f);
        var holder = new Holder();
        using var v = holder.MakeVariable(_cpu, "v", [0f]);
        using var ckpt = new Checkpoint(("model", holder));
        ckpt.Read(path).AssertConsumed().AssertExistingObjectsMatched().AssertNontrivialMatch();
        Assert.Equal([6f], v.Read<float>());
        Assert.False(ckpt.HasSaveCounter);
    }

    [Fact]
    public void SaveThenReadIntoFreshCheckpoint_CounterNodeUnbound_AssertConsumedFails()
    {
        using var dir = new TempDir("sr");
        string path;
        {
            var holder = new Holder();
            using var v = holder.MakeVariable(_cpu, "v", [7f]);
            using var saving = new Checkpoint(("model", holder));
            path = saving.Save(dir.File("ckpt"));
        }
        var fresh = new Holder();
        using var w = fresh.MakeVariable(_cpu, "v", [0f]);
        using var ckpt = new Checkpoint(("model", fresh)) { Log = null };
        var status = ckpt.Read(path);
        status.AssertExistingObjectsMatched();
        var ex = Assert.Throws<CheckpointMismatchException>(() => status.AssertConsumed());
        Assert.Contains(ex.Unmatched, u => u.Contains("(root).save_counter", StringComparison.Ordinal));
        // Restore (not Read) continues the counter from the checkpoint.
        using var other = new Checkpoint(("model", new Holder())) { Log = null };
        other.Restore(path).ExpectPartial();
        Assert.Equal(1L, other.SaveCounter.Read<long>()[0]);
        Assert.Equal(dir.File("ckpt-2"), other.Save(dir.File("ckpt")));
    }

    [Fact]
    public void RestoreNull_InitializationOnlyStatus_AllAssertionsFail()
    {
        using var ckpt = new Checkpoint();
        var status = ckpt.Restore(null);
        Assert.IsType<InitializationOnlyStatus>(status);
        Assert.Throws<CheckpointMismatchException>(() => status.AssertConsumed());
        Assert.Throws<CheckpointMismatchException>(() => status.AssertExistingObjectsMatched());
        Assert.Throws<CheckpointMismatchException>(() => status.AssertNontrivialMatch());
        Assert.Same(status, status.InitializeOrRestore());
        Assert.Same(status, status.ExpectPartial());
        Assert.True(ckpt.HasSaveCounter);
    }

    [Fact]
    public void Restore_MissingPrefix_FileNotFoundWithSuffixHint()
    {
        using var dir = new TempDir("missing");
        using var ckpt = new Checkpoint();
        var ex = Assert.Throws<FileNotFoundException>(() => ckpt.Restore(dir.File("ckpt")));
        Assert.Contains("'-1'", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Restore_SavedModelDirectory_ReadsVariablesVariables()
    {
        using var dir = new TempDir("sm");
        var holder = new Holder();
        using var v = holder.MakeVariable(_cpu, "v", [4f, 2f]);
        new TrackableSaver(holder).Save(Path.Combine(dir.Path, "variables", "variables"));
        File.WriteAllBytes(dir.File("saved_model.pb"), [0]);
        var target = new Holder();
        using var w = target.MakeVariable(_cpu, "v", [0f, 0f]);
        new TrackableSaver(target).Restore(Path.Combine(dir.Path, "variables", "variables")).AssertConsumed();
        Assert.Equal([4f, 2f], w.Read<float>());
        // Checkpoint.Restore resolves the SavedModel directory itself (rooted differently: nothing but the root matches).
        using var ckpt = new Checkpoint { Log = null };
        var status = ckpt.Restore(dir.Path);
        Assert.IsType<CheckpointLoadStatus>(status);
        Assert.EndsWith(Path.Combine("variables", "variables"), ((CheckpointLoadStatus)status).CheckpointPath, StringComparison.Ordinal);
    }

    [Fact]
    public void Constructor_NonTrackableDependency_ArgumentException()
    {
        var ex = Assert.Throws<ArgumentException>(() => new Checkpoint(("model", 42)));
        Assert.Contains("trackable", ex.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Throws<ArgumentException>(() => new Checkpoint(("save_counter", new Holder())));
        Assert.Throws<ArgumentException>(() => new AutoTrackable().TrackObject("x", "not trackable"));
    }

    [Fact]
    public void TrackableSaver_NumberZeroAddsNoSuffix_SaveWeightsIsRootedAtModel()
    {
        using var dir = new TempDir("weights");
        var model = new Holder();
        using var v = model.MakeVariable(_cpu, "kernel", [1f, 2f, 3f]);
        var saver = new TrackableSaver(model);
        Assert.Equal(dir.File("a"), saver.Save(dir.File("a"), 0));
        Assert.Equal(dir.File("a-3"), saver.Save(dir.File("a"), 3));
        var path = TrackableSaver.SaveWeights(model, dir.File("weights"));
        using (var reader = TensorBundleReader.Open(path))
            Assert.True(reader.TryGetEntry("kernel/.ATTRIBUTES/VARIABLE_VALUE", out _));   // no "model/" prefix
        Assert.Equal("model_checkpoint_path: \"weights\"\nall_model_checkpoint_paths: \"weights\"\n", File.ReadAllText(dir.File("checkpoint")));

        var other = new Holder();
        using var w = other.MakeVariable(_cpu, "kernel", [0f, 0f, 0f]);
        TrackableSaver.LoadWeights(other, path);
        Assert.Equal([1f, 2f, 3f], w.Read<float>());
        // Rooted differently: a Checkpoint(model=...) tree finds nothing but its root.
        using var ckpt = new Checkpoint(("model", new Holder())) { Log = null };
        Assert.Throws<CheckpointMismatchException>(() => ckpt.Read(path).AssertNontrivialMatch());
    }

    [Fact]
    public void Options_FreezeOnFirstUse()
    {
        using var dir = new TempDir("opt");
        var options = new CheckpointOptions { SkipSlotVariables = true };
        using var ckpt = new Checkpoint();
        ckpt.Write(dir.File("x"), options);
        Assert.True(options.IsFrozen);
        Assert.Throws<InvalidOperationException>(() => options.SkipSlotVariables = false);
        var copy = new CheckpointOptions(options) { SkipSlotVariables = false };
        Assert.False(copy.SkipSlotVariables);
    }

    [Fact]
    public void WriteCallbacks_RunAfterCommit()
    {
        using var dir = new TempDir("cb");
        var seen = new List<string>();
        var options = new CheckpointOptions { WriteCallbacks = [p => seen.Add(p + (File.Exists(p + ".index") ? ":ok" : ":missing"))] };
        using var ckpt = new Checkpoint();
        ckpt.Save(dir.File("c"), options);
        Assert.Equal([dir.File("c-1") + ":ok"], seen);
    }

    [Fact]
    public void MaxShardSizePolicy_SplitsDataFiles_RestoreReadsAll()
    {
        using var dir = new TempDir("shards");
        var holder = new Holder();
        using var a = holder.MakeVariable(_cpu, "a", Enumerable.Range(0, 100).Select(i => (float)i).ToArray());
        using var b = holder.MakeVariable(_cpu, "b", Enumerable.Range(0, 100).Select(i => -(float)i).ToArray());
        using var ckpt = new Checkpoint(("m", holder));
        var path = ckpt.Write(dir.File("s"), new CheckpointOptions { ShardingPolicy = new MaxShardSizePolicy(500) });
        Assert.True(File.Exists(dir.File("s.data-00000-of-00003")));
        Assert.True(File.Exists(dir.File("s.data-00002-of-00003")));
        var target = new Holder();
        using var ta = target.MakeVariable(_cpu, "a", new float[100]);
        using var tb = target.MakeVariable(_cpu, "b", new float[100]);
        using var restore = new Checkpoint(("m", target));
        restore.Read(path).AssertConsumed();
        Assert.Equal(b.Read<float>(), tb.Read<float>());
        Assert.Equal(a.Read<float>(), ta.Read<float>());
    }

    private string WriteOne(TempDir dir, float value)
    {
        var holder = new Holder();
        using var v = holder.MakeVariable(_cpu, "v", [value]);
        using var ckpt = new Checkpoint(("model", holder));
        return ckpt.Write(dir.File("w"));
    }
}

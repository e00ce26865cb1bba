using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Tests;

/// <summary>Restore matching, deferred restoration, precedence, mismatch errors, LoadStatus assertions and warnings (spec §7).</summary>
public sealed class RestoreTests : IClassFixture<CpuFixture>
{
    private readonly Accelerator _cpu;

    public RestoreTests(CpuFixture fixture) { _cpu = fixture.Accelerator; }

    private sealed class Layer : AutoTrackable
    {
        public Variable Add(Accelerator acc, string name, float[] values, TensorShape? shape = null) =>
            AddVariable(name, acc, DType.Float, shape ?? new TensorShape(values.Length), VariableInitializer.FromValues<float>(values));
    }

    /// <summary>Writes model{dense{kernel=[1,2,3], bias=[4]}, other{w=[9]}} and returns the prefix.</summary>
    private string WriteReference(TempDir dir, string name = "ref", float scale = 1f)
    {
        var dense = new Layer();
        using var k = dense.Add(_cpu, "kernel", [1 * scale, 2 * scale, 3 * scale]);
        using var b = dense.Add(_cpu, "bias", [4 * scale]);
        var other = new Layer();
        using var w = other.Add(_cpu, "w", [9 * scale]);
        var model = new Layer();
        model.Track("dense", dense);
        model.Track("other", other);
        using var ckpt = new Checkpoint(("model", model));
        return ckpt.Write(dir.File(name));
    }

    [Fact]
    public void ExistingVariables_RestoredImmediately()
    {
        using var dir = new TempDir("r");
        var path = WriteReference(dir);
        var (ckpt, dense, vars) = BuildTarget(withOther: true);
        using var _ = ckpt;
        ckpt.Read(path).AssertConsumed();
        Assert.Equal([1f, 2f, 3f], vars[0].Read<float>());
        Assert.Equal([4f], vars[1].Read<float>());
        DisposeAll(vars);
    }

    private (Checkpoint, Layer, List<Variable>) BuildTarget(bool withOther, bool withExtra = false)
    {
        var dense = new Layer();
        var vars = new List<Variable> { dense.Add(_cpu, "kernel", [0, 0, 0]), dense.Add(_cpu, "bias", [0]) };
        var model = new Layer();
        model.Track("dense", dense);
        if (withOther)
        {
            var other = new Layer();
            vars.Add(other.Add(_cpu, "w", [0]));
            model.Track("other", other);
        }
        if (withExtra) vars.Add(model.Add(_cpu, "extra", [0]));
        return (new Checkpoint(("model", model)) { Log = null }, dense, vars);
    }

    private static void DisposeAll(IEnumerable<Variable> vars) { foreach (var v in vars) v.Dispose(); }

    [Fact]
    public void AssertConsumed_UnusedCheckpointValues_FailsListingThem_ExistingObjectsPass()
    {
        using var dir = new TempDir("r");
        var path = WriteReference(dir);
        var (ckpt, _, vars) = BuildTarget(withOther: false);
        using var __ = ckpt;
        var status = ckpt.Read(path);
        status.AssertExistingObjectsMatched().AssertNontrivialMatch();
        var ex = Assert.Throws<CheckpointMismatchException>(() => status.AssertConsumed());
        Assert.Contains(ex.Unmatched, u => u.StartsWith("(root).model.other.w", StringComparison.Ordinal));
        Assert.Equal(path, ex.CheckpointPath);
        DisposeAll(vars);
    }

    [Fact]
    public void AssertExistingObjectsMatched_LiveObjectMissingFromCheckpoint_Fails()
    {
        using var dir = new TempDir("r");
        var path = WriteReference(dir);
        var (ckpt, _, vars) = BuildTarget(withOther: true, withExtra: true);
        using var __ = ckpt;
        var status = ckpt.Read(path);
        var ex = Assert.Throws<CheckpointMismatchException>(() => status.AssertExistingObjectsMatched());
        Assert.Equal("(root).model.extra", ex.ObjectPath);
        Assert.Throws<CheckpointMismatchException>(() => status.AssertConsumed());
        status.AssertNontrivialMatch();
        DisposeAll(vars);
    }

    [Fact]
    public void AssertNontrivialMatch_NothingButRootMatched_FailsListingObjects()
    {
        using var dir = new TempDir("r");
        var path = WriteReference(dir);
        var unrelated = new Layer();
        using var v = unrelated.Add(_cpu, "kernel", [0]);
        using var ckpt = new Checkpoint(("different", unrelated)) { Log = null };
        var status = ckpt.Read(path);
        var ex = Assert.Throws<CheckpointMismatchException>(() => status.AssertNontrivialMatch());
        Assert.Contains("(root).different.kernel", ex.Unmatched);
        Assert.Equal([0f], v.Read<float>());
    }

    [Fact]
    public void AssertConsumed_CheckpointAttributeUnknownToObject_Fails()
    {
        using var dir = new TempDir("r");
        var state = new IteratorState { Position = 5, Epoch = "e" };
        using (var saving = new Checkpoint(("it", state))) saving.Write(dir.File("s"));
        // Same edge, but an object with no attributes: the checkpointed py_state is unused.
        using var ckpt = new Checkpoint(("it", new Layer())) { Log = null };
        var ex = Assert.Throws<CheckpointMismatchException>(() => ckpt.Read(dir.File("s")).AssertConsumed());
        Assert.Contains(ex.Unmatched, u => u.Contains("attribute 'py_state'", StringComparison.Ordinal));
    }

    [Fact]
    public void Deferred_VariablesCreatedAfterRestore_InitializedFromCheckpoint()
    {
        using var dir = new TempDir("r");
        var path = WriteReference(dir);
        var model = new Layer();
        using var ckpt = new Checkpoint(("model", model)) { Log = null };
        var status = ckpt.Read(path);
        Assert.Throws<CheckpointMismatchException>(() => status.AssertConsumed());
        var dense = model.Track("dense", new Layer());
        // The initializer says 0; the pending checkpoint value wins (no double initialization needed).
        using var kernel = dense.Add(_cpu, "kernel", [0, 0, 0]);
        using var bias = dense.Add(_cpu, "bias", [0]);
        var other = model.Track("other", new Layer());
        using var w = other.Add(_cpu, "w", [0]);
        status.AssertConsumed();
        Assert.Equal([1f, 2f, 3f], kernel.Read<float>());
        Assert.Equal([9f], w.Read<float>());
    }

    [Fact]
    public void Deferred_VariableCreatedStandaloneThenTracked_RestoredOnTracking()
    {
        using var dir = new TempDir("r");
        var path = WriteReference(dir);
        var model = new Layer();
        using var ckpt = new Checkpoint(("model", model)) { Log = null };
        var status = ckpt.Read(path);
        var other = new Layer();
        using var w = Variable.Create(_cpu, "w", DType.Float, new TensorShape(1), VariableInitializer.Constant(-1f));
        other.Track("w", w);
        Assert.Equal([-1f], w.Read<float>());                     // not reachable from the checkpoint yet
        model.Track("other", other);
        Assert.Equal([9f], w.Read<float>());
        status.ExpectPartial();
    }

    [Fact]
    public void Deferred_ShapeMismatchAtCreation_ThrowsWithPathKeyAndShapes()
    {
        using var dir = new TempDir("r");
        var path = WriteReference(dir);
        var model = new Layer();
        using var ckpt = new Checkpoint(("model", model)) { Log = null };
        ckpt.Read(path).ExpectPartial();
        var dense = model.Track("dense", new Layer());
        var ex = Assert.Throws<CheckpointMismatchException>(() => dense.Add(_cpu, "kernel", [0, 0, 0, 0]));
        Assert.Equal("(root).model.dense.kernel", ex.ObjectPath);
        Assert.Equal("model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE", ex.Key);
        Assert.Equal("float32 [4]", ex.Expected);
        Assert.Equal("float32 [3]", ex.Actual);
        Assert.Null(dense.LookupChild("kernel"));
    }

    [Fact]
    public void Restore_DtypeMismatch_ThrowsNoCasting()
    {
        using var dir = new TempDir("r");
        var path = WriteReference(dir);
        var dense = new Layer();
        using var kernel = Variable.Create(dense, "kernel", _cpu, DType.Double, new TensorShape(3));
        var model = new Layer();
        model.Track("dense", dense);
        using var ckpt = new Checkpoint(("model", model)) { Log = null };
        var ex = Assert.Throws<CheckpointMismatchException>(() => ckpt.Read(path));
        Assert.Equal("float64 [3]", ex.Expected);
        Assert.Equal("float32 [3]", ex.Actual);
        Assert.Equal("model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE", ex.Key);
    }

    [Fact]
    public void Precedence_NewestRestoreWins_EvenWhenOlderDeferredFiresLater()
    {
        using var dir = new TempDir("r");
        var older = WriteReference(dir, "older", 1f);
        var newer = WriteReference(dir, "newer", 10f);
        var model = new Layer();
        using var ckpt = new Checkpoint(("model", model)) { Log = null };
        ckpt.Read(older).ExpectPartial();
        ckpt.Read(newer).ExpectPartial();
        var dense = model.Track("dense", new Layer());
        using var kernel = dense.Add(_cpu, "kernel", [0, 0, 0]);
        Assert.Equal([10f, 20f, 30f], kernel.Read<float>());
        // An existing variable restored again by the older checkpoint takes the older values (a newer call).
        ckpt.Read(older).ExpectPartial();
        Assert.Equal([1f, 2f, 3f], kernel.Read<float>());
    }

    [Fact]
    public void Dispose_WithoutExpectPartial_WarnsAboutUnmatchedValues()
    {
        using var dir = new TempDir("r");
        var path = WriteReference(dir);
        var log = new StringWriter();
        var (ckpt, _, vars) = BuildTarget(withOther: false);
        ckpt.Log = log;
        ckpt.Read(path);
        Assert.Equal("", log.ToString());
        ckpt.Dispose();
        Assert.Contains("Value in checkpoint could not be found in the restored object: (root).model.other.w", log.ToString(), StringComparison.Ordinal);
        DisposeAll(vars);

        var quiet = new StringWriter();
        var (ckpt2, _, vars2) = BuildTarget(withOther: false);
        ckpt2.Log = quiet;
        ckpt2.Read(path).ExpectPartial();
        ckpt2.Dispose();
        Assert.Equal("", quiet.ToString());
        DisposeAll(vars2);

        var statusLog = new StringWriter();
        var (ckpt3, _, vars3) = BuildTarget(withOther: false);
        ckpt3.Log = statusLog;
        using (ckpt3.Read(path)) { }
        Assert.Contains("(root).model.other.w", statusLog.ToString(), StringComparison.Ordinal);
        ckpt3.Dispose();   // disposes the status a second time: the warning must not repeat (RestoreCoordinator._reported)
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(statusLog.ToString(), System.Text.RegularExpressions.Regex.Escape("(root).model.other.w")));
        DisposeAll(vars3);
    }

    [Fact]
    public async Task WaitAsync_CompletesWithStatus_HonorsCancellation()
    {
        using var dir = new TempDir("r");
        var path = WriteReference(dir);
        var (ckpt, _, vars) = BuildTarget(withOther: true);
        using var __ = ckpt;
        var status = ckpt.Read(path);
        Assert.Same(status, await status.WaitAsync());
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => status.WaitAsync(cts.Token));
        DisposeAll(vars);
    }

    [Fact]
    public void CustomState_SavedAsPyStateString_RestoredOnCreation()
    {
        using var dir = new TempDir("state");
        var it = new IteratorState { Position = 12345, Epoch = "ep-3" };
        using (var ckpt = new Checkpoint(("iterator", it))) ckpt.Write(dir.File("s"));
        using (var reader = TensorBundleReader.Open(dir.File("s")))
        {
            var entry = reader.GetEntry("iterator/.ATTRIBUTES/py_state");
            Assert.Equal(DType.String, entry.DType);
            Assert.Equal("12345;ep-3", System.Text.Encoding.UTF8.GetString(reader.ReadStrings(entry)[0]));
        }
        using var restored = new Checkpoint { Log = null };
        var status = restored.Read(dir.File("s"));
        var fresh = restored.Track("iterator", new IteratorState());
        Assert.Equal(12345, fresh.Position);
        Assert.Equal("ep-3", fresh.Epoch);
        status.AssertConsumed();
    }

    [Fact]
    public void TrackableList_And_Dictionary_EdgesAndRestoreOnCreate()
    {
        using var dir = new TempDir("list");
        var list = new TrackableList<Variable>();
        using var a = list.AddVariable(_cpu, DType.Float, new TensorShape(2), VariableInitializer.FromValues<float>([1f, 2f]), "a");
        using var b = list.AddVariable(_cpu, DType.Int64, TensorShape.Scalar, VariableInitializer.Constant(7L), "b");
        var dict = new TrackableDictionary();
        dict["x/y"] = a;                                           // shared with the list; edge name escaped in keys
        using (var ckpt = new Checkpoint(("list", list), ("dict", dict), ("empty", new TrackableDictionary())))
            ckpt.Write(dir.File("l"));
        using (var reader = TensorBundleReader.Open(dir.File("l")))
        {
            var graph = reader.ReadObjectGraph()!;
            Assert.Equal(["dict", "empty", "list"], graph.Nodes[0].Children.Select(c => c.LocalName));
            Assert.False(graph.Nodes[2].HasCheckpointValues);      // empty dictionary
            Assert.True(reader.TryGetEntry("dict/x.Sy/.ATTRIBUTES/VARIABLE_VALUE", out _));  // BFS reaches a through dict first
            Assert.True(reader.TryGetEntry("list/1/.ATTRIBUTES/VARIABLE_VALUE", out _));
        }
        var target = new TrackableList<Variable>();
        using var restore = new Checkpoint(("list", target), ("dict", new TrackableDictionary()), ("empty", new TrackableDictionary())) { Log = null };
        var status = restore.Read(dir.File("l"));
        using var ta = target.AddVariable(_cpu, DType.Float, new TensorShape(2));
        using var tb = target.AddVariable(_cpu, DType.Int64, TensorShape.Scalar);
        Assert.Equal([1f, 2f], ta.Read<float>());
        Assert.Equal([7L], tb.Read<long>());
        status.AssertExistingObjectsMatched();
    }

    [Fact]
    public void TrackDependency_DuplicateNameWithoutOverwrite_Throws_AutoTrackableReplacesInPlace()
    {
        var parent = new Layer();
        var first = parent.Track("a", new Layer());
        parent.Track("b", new Layer());
        var replacement = parent.Track("a", new Layer());
        Assert.Equal(["a", "b"], parent.GetChildren().Select(c => c.Name));
        Assert.Same(replacement, parent.GetChildren()[0].Target);
        Assert.NotSame(first, replacement);
        parent.Track<Layer?>("a", null);
        Assert.Equal(["b"], parent.GetChildren().Select(c => c.Name));
        using var v = parent.Add(_cpu, "kernel", [1f]);
        Assert.Throws<ArgumentException>(() => parent.Add(_cpu, "kernel", [1f]));
    }
}

internal static class TrackableTestExtensions
{
    public static Trackable? LookupChild(this Trackable t, string name) =>
        t.GetChildren().FirstOrDefault(c => c.Name == name).Target;
}

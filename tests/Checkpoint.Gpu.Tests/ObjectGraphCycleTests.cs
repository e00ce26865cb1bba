using System.Runtime.InteropServices;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Format.Protos;
using CheckpointGpu.TestSupport;
using Google.Protobuf;
using static CheckpointGpu.Format.Protos.TrackableObjectGraph.Types;
using static CheckpointGpu.Format.Protos.TrackableObjectGraph.Types.TrackableObject.Types;

namespace CheckpointGpu.Tests;

/// <summary>
/// Object graphs are graphs: self-edges, edges back to the root or to an ancestor, cycles and shared children (diamonds).
/// TensorFlow numbers and names nodes by the first breadth-first path from the root and treats a node reached twice as
/// one object (<c>tensorflow/python/checkpoint/trackable_view.py</c> <c>_descendants_with_paths</c>: a dependency already
/// in <c>node_paths</c> is not visited again; <c>restore.py</c> <c>_queue_children_for_restoration</c> skips children
/// already bound). The expected names, keys and protos below are derived by hand from that rule, not from our output.
/// TF 2.11+ Keras graphs contain an edge named <c>root</c> from node 0 to node 0 (shape "self-edge on the root").
/// </summary>
public sealed class ObjectGraphCycleTests(CpuFixture cpu) : IClassFixture<CpuFixture>, IDisposable
{
    private readonly TempDir _dir = new("cycles");
    private Accelerator Acc => cpu.Accelerator;

    public void Dispose() => _dir.Dispose();

    /// <summary>One synthetic graph: node → edges, the variable nodes with their keys, and the expected readable names.</summary>
    public sealed record Shape(string Name, (string Edge, int To)[][] Children, Dictionary<int, string> VariableKeys, string[] ExpectedNames);

    private static string K(string path) => path + "/.ATTRIBUTES/VARIABLE_VALUE";

    public static readonly Shape[] Shapes =
    [
        // TF 2.11+ Keras: an edge named 'root' from the root to itself.
        new("self-edge on the root",
            [[("root", 0), ("v", 1)], []],
            new() { [1] = K("v") },
            ["(root)", "(root).v"]),
        new("edge back to the root",
            [[("model", 1)], [("kernel", 2), ("parent", 0)], []],
            new() { [2] = K("model/kernel") },
            ["(root)", "(root).model", "(root).model.kernel"]),
        new("edge to an ancestor and a self-edge below the root",
            [[("a", 1)], [("b", 2), ("me", 1)], [("up", 1), ("root", 0), ("w", 3)], []],
            new() { [3] = K("a/b/w") },
            ["(root)", "(root).a", "(root).a.b", "(root).a.b.w"]),
        // The shared variable is named by its first breadth-first path (a before b).
        new("diamond (shared child)",
            [[("a", 1), ("b", 2)], [("shared", 3)], [("shared", 3), ("own", 4)], [], []],
            new() { [3] = K("a/shared"), [4] = K("b/own") },
            ["(root)", "(root).a", "(root).b", "(root).a.shared", "(root).b.own"]),
        new("three-node cycle",
            [[("x", 1)], [("y", 2)], [("z", 3), ("v", 4)], [("x", 1)], []],
            new() { [4] = K("x/y/v") },
            ["(root)", "(root).x", "(root).x.y", "(root).x.y.z", "(root).x.y.v"]),
    ];

    public static TheoryData<int> ShapeIds()
    {
        var data = new TheoryData<int>();
        for (var i = 0; i < Shapes.Length; i++) data.Add(i);
        return data;
    }

    private static TrackableObjectGraph BuildProto(Shape shape)
    {
        var graph = new TrackableObjectGraph();
        for (var id = 0; id < shape.Children.Length; id++)
        {
            var node = new TrackableObject();
            foreach (var (edge, to) in shape.Children[id]) node.Children.Add(new ObjectReference { LocalName = edge, NodeId = to });
            if (shape.VariableKeys.TryGetValue(id, out var key))
                node.Attributes.Add(new SerializedTensor { Name = "VARIABLE_VALUE", FullName = $"var{id}", CheckpointKey = key });
            graph.Nodes.Add(node);
        }
        return graph;
    }

    private static float[] ValuesOf(int nodeId) => [nodeId + 0.5f, -nodeId, nodeId * 3.25f];

    /// <summary>Writes the shape as a TF2 checkpoint: tensors in node order (TF's data order), then the object graph.</summary>
    private string WriteCheckpoint(Shape shape)
    {
        var prefix = _dir.File("ckpt-" + shape.Name.Replace(' ', '_').Replace("(", "").Replace(")", ""));
        using var w = new TensorBundleWriter(prefix);
        foreach (var (id, key) in shape.VariableKeys.OrderBy(kv => kv.Key))
            w.Add(key, DType.Float, new TensorShape(3), MemoryMarshal.AsBytes(ValuesOf(id).AsSpan()));
        w.AddStrings(CheckpointKeys.ObjectGraph, TensorShape.Scalar, [BuildProto(shape).ToByteArray()]);
        w.Finish();
        return prefix;
    }

    [Theory]
    [MemberData(nameof(ShapeIds))]
    public void ObjectGraphNames_NameEveryNodeByItsFirstBreadthFirstPath(int shapeId)
    {
        var shape = Shapes[shapeId];
        Assert.Equal(shape.ExpectedNames, CheckpointKeys.NodeDisplayNames(BuildProto(shape)));
    }

    [Theory]
    [MemberData(nameof(ShapeIds))]
    public void Mirror_RestoresEveryValueOnce_AndRewritesTheSameGraph(int shapeId)
    {
        var shape = Shapes[shapeId];
        var prefix = WriteCheckpoint(shape);
        using var mirror = LoadedCheckpoint.Restore(prefix, Acc, log: null);
        mirror.Status.AssertConsumed();
        // A node reached twice is one object: exactly one variable per variable node.
        Assert.Equal(shape.VariableKeys.Values.Order(StringComparer.Ordinal), mirror.Variables.Select(v => v.Key).Order(StringComparer.Ordinal));
        foreach (var (id, key) in shape.VariableKeys)
            Assert.Equal(ValuesOf(id), mirror.Variables.Single(v => v.Key == key).Variable.Read<float>());

        var written = mirror.Write(_dir.File("rewritten-" + shapeId));
        using var reader = TensorBundleReader.Open(written);
        var graph = reader.ReadObjectGraph()!;
        Assert.Equal(BuildProto(shape), graph);   // same nodes, same edges (back-edges included), same keys
        using var source = TensorBundleReader.Open(prefix);
        Assert.Equal(source.Entries.Where(e => e.Key != CheckpointKeys.ObjectGraph).Select(e => (e.Key, e.Crc32C)),
                     reader.Entries.Where(e => e.Key != CheckpointKeys.ObjectGraph).Select(e => (e.Key, e.Crc32C)));
    }

    /// <summary>Live objects with the same cycles: node, its edges, in tracking order; variables created by their parent.</summary>
    private sealed class Node : AutoTrackable;

    private Trackable[] BuildLive(Shape shape, bool createVariables)
    {
        var objects = new Trackable?[shape.Children.Length];
        objects[0] = new Node();
        // Create objects breadth-first (first path), then track every edge in order, as user code would.
        var queue = new Queue<int>([0]);
        while (queue.Count > 0)
        {
            var id = queue.Dequeue();
            foreach (var (edge, to) in shape.Children[id])
            {
                if (objects[to] is null)
                {
                    if (shape.VariableKeys.ContainsKey(to))
                    {
                        if (!createVariables) continue;
                        objects[to] = Variable.Create(objects[id]!, edge, Acc, DType.Float, new TensorShape(3), fullName: $"var{to}");
                        continue;
                    }
                    objects[to] = new Node();
                    queue.Enqueue(to);
                }
                ((AutoTrackable)objects[id]!).Track(edge, objects[to]);
            }
        }
        return objects!;
    }

    [Theory]
    [MemberData(nameof(ShapeIds))]
    public void RestoreOnCreate_IntoLiveObjectsWithTheSameCycles_EveryVariableGetsItsValue(int shapeId)
    {
        var shape = Shapes[shapeId];
        var prefix = WriteCheckpoint(shape);
        var root = new Node();
        var status = new TrackableSaver(root).Restore(prefix);   // before anything below the root exists
        // Build the rest of the tree now: every variable is created with its checkpointed value.
        var objects = new Trackable?[shape.Children.Length];
        objects[0] = root;
        var queue = new Queue<int>([0]);
        while (queue.Count > 0)
        {
            var id = queue.Dequeue();
            foreach (var (edge, to) in shape.Children[id])
            {
                if (objects[to] is null)
                {
                    objects[to] = shape.VariableKeys.ContainsKey(to)
                        ? Variable.Create(objects[id]!, edge, Acc, DType.Float, new TensorShape(3), fullName: $"var{to}")
                        : new Node();
                    if (objects[to] is Node) queue.Enqueue(to);
                }
                ((AutoTrackable)objects[id]!).Track(edge, objects[to]);
            }
        }
        status.AssertConsumed();
        foreach (var (id, _) in shape.VariableKeys)
            Assert.Equal(ValuesOf(id), ((Variable)objects[id]!).Read<float>());
        foreach (var v in objects.OfType<Variable>()) v.Dispose();
    }

    [Theory]
    [MemberData(nameof(ShapeIds))]
    public void Save_LiveObjectsWithCycles_WritesTheGraphTensorFlowWould(int shapeId)
    {
        var shape = Shapes[shapeId];
        var objects = BuildLive(shape, createVariables: true);
        try
        {
            foreach (var (id, _) in shape.VariableKeys) ((Variable)objects[id]).Assign<float>(ValuesOf(id));
            var written = new TrackableSaver(objects[0]).Write(_dir.File("saved-" + shapeId), new CheckpointOptions { WriteHasCheckpointValues = false });
            using var reader = TensorBundleReader.Open(written);
            // Same node ids, edges (back-edges included) and keys as TF's breadth-first numbering gives.
            Assert.Equal(Normalize(BuildProto(shape)), Normalize(reader.ReadObjectGraph()!));
            foreach (var (id, key) in shape.VariableKeys)
            {
                var values = new float[3];
                reader.ReadTensor(reader.GetEntry(key), MemoryMarshal.AsBytes(values.AsSpan()));
                Assert.Equal(ValuesOf(id), values);
            }
        }
        finally
        {
            foreach (var v in objects.OfType<Variable>()) v.Dispose();
        }
    }

    private static TrackableObjectGraph Normalize(TrackableObjectGraph g)
    {
        var copy = g.Clone();
        foreach (var n in copy.Nodes)
            foreach (var a in n.Attributes) a.FullName = "";
        return copy;
    }

    /// <summary>
    /// TF-written graphs are full of shared children (Keras models track each layer as <c>layer-N</c> and again under
    /// <c>layer_with_weights-N</c> or its attribute name; 16 of the 18 object-based corpus cases have such edges). TF keyed
    /// every value by the first breadth-first path; <see cref="CheckpointKeys.NodeDisplayNames"/> must name each node by that same path.
    /// </summary>
    [CorpusFact]
    public void ObjectGraphNames_OnTensorFlowGraphsWithSharedChildren_MatchTheKeysTensorFlowWrote()
    {
        var graphsWithSharedChildren = 0;
        var checkedKeys = 0;
        foreach (var (_, prefix) in TfCorpus.AllPrefixes())
        {
            using var reader = TensorBundleReader.Open(prefix);
            var graph = reader.ReadObjectGraph();
            if (graph is null) continue;
            var incoming = new int[graph.Nodes.Count];
            foreach (var n in graph.Nodes) foreach (var c in n.Children) incoming[c.NodeId]++;
            if (incoming.Any(c => c > 1)) graphsWithSharedChildren++;
            var slotNodes = graph.Nodes.SelectMany(n => n.SlotVariables).Select(s => s.SlotVariableNodeId).ToHashSet();
            var names = CheckpointKeys.NodeDisplayNames(graph);
            for (var id = 1; id < graph.Nodes.Count; id++)
            {
                if (slotNodes.Contains(id) || names[id].StartsWith("(unreachable", StringComparison.Ordinal)) continue;
                var edges = names[id]["(root).".Length..].Split('.');
                if (edges.Any(e => e.Length == 0)) continue;   // an edge name containing '.' cannot be split back
                var path = string.Join('/', edges.Select(e => e.Replace("/", ".S", StringComparison.Ordinal)));
                foreach (var a in graph.Nodes[id].Attributes)
                {
                    Assert.Equal($"{path}/.ATTRIBUTES/{a.Name}", a.CheckpointKey);
                    checkedKeys++;
                }
            }
        }
        Assert.True(graphsWithSharedChildren >= 10, $"only {graphsWithSharedChildren} corpus graphs have shared children");
        Assert.True(checkedKeys > 500, $"only {checkedKeys} keys checked");
    }

    [Fact]
    public void Track_ObjectAsItsOwnDependency_IsAllowedAsInTensorFlow()
    {
        var root = new Node();
        root.Track("root", root);
        Assert.Same(root, root.GetChildren().Single().Target);
        Assert.Single(new ObjectGraphView(root).ListObjects());
    }
}

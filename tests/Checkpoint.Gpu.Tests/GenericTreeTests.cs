using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Format.Protos;
using CheckpointGpu.TestSupport;
using Xunit.Abstractions;

namespace CheckpointGpu.Tests;

/// <summary>
/// What <c>ckpt restore</c> does, built only on the public API: restore into an empty root, then mirror the
/// checkpoint's object graph so that every value arrives by restore-on-create, assert consumption, verify TF's
/// checksums from device memory, and write the tree again.
/// </summary>
public sealed class GenericTreeTests(ITestOutputHelper output) : IClassFixture<CpuFixture>
{
    /// <summary>A node whose non-variable attributes are kept in host memory as stored.</summary>
    private sealed class GenericNode : AutoTrackable
    {
        private readonly List<SaveableValue> _values = [];

        public void AddHostAttribute(string name, string fullName, bool optionalRestore)
        {
            HostTensor? value = null;
            _values.Add(new HostTensorValue(name, () => value ?? throw new InvalidOperationException($"'{name}' was never restored."),
                v => value = v, fullName: fullName, optionalRestore: optionalRestore));
        }

        // "protected internal" only because this test assembly sees the library's internals; other assemblies write "protected override".
        protected internal override IReadOnlyList<SaveableValue> GetSaveableValues() => _values;

        public void AddGroupAttribute(string name, string fullName, bool optionalRestore)
        {
            IReadOnlyDictionary<string, HostTensor>? values = null;
            _values.Add(new HostTensorGroupValue(name,
                () => (values ?? throw new InvalidOperationException($"'{name}' was never restored.")).ToList(),
                v => values = v, fullName, optionalRestore));
        }
    }

    private sealed class GenericOptimizer() : OptimizerBase("optimizer")
    {
        protected override string GetSlotFullName(Variable variable, string slotName, string? checkpointFullName) =>
            checkpointFullName ?? base.GetSlotFullName(variable, slotName, checkpointFullName);
    }

    private sealed class KeepShards(IReadOnlyDictionary<string, int> shardOfKey, int shardCount) : IShardingPolicy
    {
        public ShardAssignment AssignShards(IReadOnlyList<ShardableTensor> tensors) =>
            new(shardCount, tensors.Select(t => shardOfKey.TryGetValue(t.Key, out var s) ? s
                : shardOfKey.First(kv => kv.Key.StartsWith(t.Key, StringComparison.Ordinal)).Value).ToArray());
    }

    public static TheoryData<string> ObjectBasedPrefixes()
    {
        var data = new TheoryData<string>();
        if (TfCorpus.Root is null) { _ = TfCorpus.SkipReason; return data; }
        foreach (var (_, prefix) in TfCorpus.AllPrefixes())
        {
            using var reader = TensorBundleReader.Open(prefix);
            if (reader.IsObjectBased) data.Add(Path.GetRelativePath(TfCorpus.RequireRoot(), prefix));
        }
        return data;
    }

    private static List<Variable> Mirror(TrackableObjectGraph graph, TensorBundleReader reader, Trackable root, Accelerator acc)
    {
        var variables = new List<Variable>();
        var objects = new Trackable?[graph.Nodes.Count];
        objects[0] = root;
        var queue = new Queue<int>([0]);
        while (queue.Count > 0)
        {
            var id = queue.Dequeue();
            var parent = objects[id]!;
            foreach (var edge in graph.Nodes[id].Children)
            {
                if (objects[edge.NodeId] is { } existing)
                {
                    ((AutoTrackable)parent).Track(edge.LocalName, existing);
                    continue;
                }
                var node = graph.Nodes[edge.NodeId];
                if (node.Attributes.Count == 1 && node.Attributes[0].Name == "VARIABLE_VALUE" && node.Children.Count == 0
                    && reader.TryGetEntry(node.Attributes[0].CheckpointKey, out var entry) && DTypes.IsFixedSize(entry.DType) && !entry.IsPartitioned)
                {
                    var v = Variable.Create(parent, edge.LocalName, acc, entry.DType, entry.Shape, fullName: node.Attributes[0].FullName);
                    variables.Add(v);
                    objects[edge.NodeId] = v;
                    continue;
                }
                var generic = node.SlotVariables.Count > 0 ? (AutoTrackable)new GenericOptimizer() : new GenericNode();
                if (generic is GenericNode g)
                {
                    foreach (var a in node.Attributes)
                    {
                        if (reader.TryGetEntry(a.CheckpointKey, out _)) g.AddHostAttribute(a.Name, a.FullName, a.OptionalRestore);
                        else g.AddGroupAttribute(a.Name, a.FullName, a.OptionalRestore);   // e.g. lookup tables: table-keys / table-values
                    }
                }
                objects[edge.NodeId] = generic;
                ((AutoTrackable)parent).Track(edge.LocalName, generic);
                queue.Enqueue(edge.NodeId);
            }
        }
        foreach (var o in objects.OfType<OptimizerBase>())
            foreach (var v in variables.ToArray())
                foreach (var slot in o.GetSlots(v).Values) variables.Add(slot);
        return variables;
    }

    [CorpusTheory]
    [MemberData(nameof(ObjectBasedPrefixes))]
    public void RestoreOnCreate_GenericMirror_Consumed_ValuesMatchTfCrcs_Rewrite(string relativePrefix)
    {
        var tf = Path.Combine(TfCorpus.RequireRoot(), relativePrefix);
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var reader = TensorBundleReader.Open(tf);
        var graph = reader.ReadObjectGraph()!;
        var root = new GenericNode();
        foreach (var a in graph.Nodes[0].Attributes) root.AddHostAttribute(a.Name, a.FullName, a.OptionalRestore);
        var saver = new TrackableSaver(root) { Log = null };
        var status = saver.Restore(tf);                      // before the tree exists
        var variables = Mirror(graph, reader, root, acc);
        try
        {
            status.AssertConsumed().AssertExistingObjectsMatched();
            foreach (var v in variables)
            {
                // Every value read back from device memory carries the CRC TensorFlow stored.
                var key = FindKey(graph, saver, v);
                var entry = reader.GetEntry(key);
                Assert.Equal(entry.Crc32C, MaskedCrc32C.ComputeMasked(v.ReadBytes()));
            }

            using var dir = new TempDir("mirror");
            var shards = reader.Entries.Where(e => e.Key.Length > 0 && !e.IsSliceEntry).ToDictionary(e => e.Key, e => e.ShardId);
            var options = new CheckpointOptions
            {
                WriteHasCheckpointValues = graph.Nodes.Any(n => n.HasCheckpointValues is not null),
                ShardingPolicy = new KeepShards(shards, reader.Header.ShardCount),
            };
            var written = saver.Write(dir.File("copy"), options);
            var graphSame = TestUtil.ReadTfObjectGraph(tf).AsSpan().SequenceEqual(TestUtil.ReadTfObjectGraph(written));
            var indexSame = File.ReadAllBytes(tf + ".index").AsSpan().SequenceEqual(File.ReadAllBytes(written + ".index"));
            var dataSame = Enumerable.Range(0, reader.Header.ShardCount).All(i =>
                File.ReadAllBytes(BundleNaming.DataFile(tf, i, reader.Header.ShardCount)).AsSpan()
                    .SequenceEqual(File.ReadAllBytes(BundleNaming.DataFile(written, i, reader.Header.ShardCount))));
            output.WriteLine($"{relativePrefix}: graph {(graphSame ? "identical" : "DIFFERS")}, index {(indexSame ? "identical" : "DIFFERS")}, data {(dataSame ? "identical" : "DIFFERS")}");
            if (!graphSame)
            {
                var ours = TrackableObjectGraph.Parser.ParseFrom(TestUtil.ReadTfObjectGraph(written));
                for (var i = 0; i < Math.Max(ours.Nodes.Count, graph.Nodes.Count); i++)
                    if (i >= ours.Nodes.Count || i >= graph.Nodes.Count || !ours.Nodes[i].Equals(graph.Nodes[i]))
                    {
                        output.WriteLine($"first differing node {i}: TF {(i < graph.Nodes.Count ? graph.Nodes[i] : null)} ours {(i < ours.Nodes.Count ? ours.Nodes[i] : null)}");
                        break;
                    }
            }
            Assert.True(graphSame, "object graph bytes differ from TensorFlow's");
            Assert.True(indexSame, ".index differs from TensorFlow's");
            Assert.True(dataSame, "a data file differs from TensorFlow's");
            // The re-written checkpoint restores as well.
            using var again = TensorBundleReader.Open(written);
            Assert.Equal(reader.Entries.Count, again.Entries.Count);
        }
        finally
        {
            foreach (var v in variables) v.Dispose();
        }
    }

    private static string FindKey(TrackableObjectGraph graph, TrackableSaver saver, Variable v)
    {
        var objects = saver.View.ListObjects();
        for (var i = 0; i < objects.Count; i++)
            if (ReferenceEquals(objects[i], v)) return graph.Nodes[i].Attributes[0].CheckpointKey;
        throw new InvalidOperationException($"{v} is not reachable.");
    }
}

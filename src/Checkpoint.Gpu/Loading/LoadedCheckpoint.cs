using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Format.Protos;

namespace CheckpointGpu;

/// <summary>
/// Loads any TensorFlow checkpoint into a generic trackable tree that mirrors it, built <b>after</b>
/// <see cref="TrackableSaver.Restore"/> so that every value arrives by restore-on-create into device buffers;
/// the tree can then be written again. This is what <c>ckpt restore</c> does, and a way to load a checkpoint
/// for which no C# model exists.
/// </summary>
/// <remarks>
/// <para>Object-based checkpoints: the object graph is walked breadth-first from node 0; a node with exactly one
/// <c>VARIABLE_VALUE</c> attribute of a fixed-size dtype and no children becomes a <see cref="Variable"/>
/// (created with <see cref="Variable.Create(Trackable, string, Accelerator, DType, TensorShape, VariableInitializer?, string?)"/>,
/// which consumes the pending restore); a node with slot variables becomes an optimizer that creates its slots when
/// their values arrive (spec §7.4); every other node keeps its attributes (strings, lookup tables, <c>py_state</c>)
/// in host memory. Name-based (TF1) checkpoints: one variable per fixed-size key and one host value per string key,
/// as children of the root named after the key (TF's name-based restore matches by <c>full_name</c>, spec §7.9).</para>
/// <para>Object graphs are graphs, as in TensorFlow (<c>trackable_view.py</c> <c>_descendants_with_paths</c>): a node
/// reached a second time — a shared child, an edge back to an ancestor or to the root, a self-edge such as the edge
/// named <c>root</c> from node 0 to node 0 that TF 2.11+ Keras graphs contain — is the same object, tracked again
/// under that edge's name; nodes and keys are named by their first breadth-first path, and the re-written graph keeps
/// every edge.</para>
/// <para><see cref="Write"/> keeps each key's shard and the presence of <c>has_checkpoint_values</c>, so re-writing
/// a TensorFlow-written object-based checkpoint reproduces TensorFlow's files byte for byte (tested over the
/// corpus). Partitioned (sliced) entries are not supported yet: <see cref="NotSupportedException"/>.</para>
/// <para>Not thread-safe. Dispose to free the device buffers.</para>
/// </remarks>
public sealed class LoadedCheckpoint : IDisposable, IAsyncDisposable
{
    private readonly List<LoadedVariable> _variables;
    private readonly Dictionary<string, int> _shardOfKey;
    private readonly int _shardCount;
    private readonly bool _writeHasCheckpointValues;
    private bool _disposed;

    private LoadedCheckpoint(string prefix, bool isObjectBased, LoadedNode root, TrackableSaver saver, LoadStatus status,
        List<LoadedVariable> variables, int hostValueCount, Dictionary<string, int> shardOfKey, int shardCount, bool writeHasCheckpointValues)
    {
        Prefix = prefix;
        IsObjectBased = isObjectBased;
        Root = root;
        Saver = saver;
        Status = status;
        _variables = variables;
        HostValueCount = hostValueCount;
        _shardOfKey = shardOfKey;
        _shardCount = shardCount;
        _writeHasCheckpointValues = writeHasCheckpointValues;
    }

    /// <summary>The restored checkpoint's prefix.</summary>
    public string Prefix { get; }

    /// <summary>True for object-based (TF2) checkpoints, false for name-based (TF1 <c>Saver</c>) ones.</summary>
    public bool IsObjectBased { get; }

    /// <summary>The root of the loaded tree (node 0).</summary>
    public Trackable Root { get; }

    /// <summary>The saver over <see cref="Root"/> that restored the checkpoint; use it to write the tree again.</summary>
    public TrackableSaver Saver { get; }

    /// <summary>The status of the restore; <see cref="LoadStatus.AssertConsumed"/> passes when every value found a home.</summary>
    public LoadStatus Status { get; }

    /// <summary>Every variable created, with the key its value came from (slot variables included).</summary>
    public IReadOnlyList<LoadedVariable> Variables => _variables;

    /// <summary>Number of values kept in host memory instead of device buffers (strings, lookup tables, non-variable state).</summary>
    public int HostValueCount { get; }

    /// <summary>
    /// Restores the checkpoint at <paramref name="prefix"/> into a new loaded tree whose variables live on
    /// <paramref name="accelerator"/>.
    /// </summary>
    /// <param name="prefix">Checkpoint prefix (<c>&lt;prefix&gt;.index</c> must exist).</param>
    /// <param name="accelerator">Where variable buffers are allocated; not disposed here.</param>
    /// <param name="log">Where the restore reports unused values on dispose; <see langword="null"/> for silence.</param>
    /// <exception cref="FileNotFoundException">The index or a data file is missing.</exception>
    /// <exception cref="CheckpointFormatException">The checkpoint is corrupt or unsupported.</exception>
    /// <exception cref="NotSupportedException">The checkpoint holds partitioned (sliced) variables.</exception>
    /// <exception cref="KeyNotFoundException">The object graph names a checkpoint key the index does not hold.</exception>
    /// <exception cref="CheckpointMismatchException">A checkpointed value does not fit the object created for it.</exception>
    public static LoadedCheckpoint Restore(string prefix, Accelerator accelerator, TextWriter? log = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        ArgumentNullException.ThrowIfNull(accelerator);
        using var reader = TensorBundleReader.Open(prefix);
        var partitioned = reader.Entries.FirstOrDefault(e => e.IsPartitioned);
        if (partitioned is not null)
            throw new NotSupportedException($"{reader.IndexPath}: '{partitioned.Key}' is a partitioned (sliced) tensor; restoring sliced variables is not supported yet.");
        var graph = reader.ReadObjectGraph();
        var root = new LoadedNode();
        if (graph is not null)
            foreach (var a in graph.Nodes[0].Attributes) root.AddHostValue(a.Name, a.FullName, a.OptionalRestore);

        var saver = new TrackableSaver(root) { Log = log };
        var status = saver.Restore(prefix);          // before the tree exists: everything below is restore-on-create
        var variables = new List<LoadedVariable>();
        int hostValues;
        try
        {
            hostValues = graph is not null
                ? LoadObjectGraph(graph, reader, root, accelerator, variables)
                : LoadNameBased(reader, root, accelerator, variables);
        }
        catch
        {
            foreach (var v in variables) v.Variable.Dispose();
            throw;
        }
        var shards = reader.Entries.Where(e => e.Key.Length > 0 && !e.IsSliceEntry).ToDictionary(e => e.Key, e => e.ShardId, StringComparer.Ordinal);
        return new LoadedCheckpoint(reader.Prefix, graph is not null, root, saver, status, variables, hostValues, shards,
            reader.Header.ShardCount, graph is null || graph.Nodes.Any(n => n.HasCheckpointValues is not null));
    }

    /// <summary>
    /// Writes the tree (current values, read from the device buffers) as a new checkpoint at <paramref name="prefix"/>,
    /// keeping the source's shard of every key; no counter, no state file (TF's <c>write</c>).
    /// </summary>
    /// <remarks>The IO pipeline's save, waited for (the one engine and commit protocol of every save).</remarks>
    /// <param name="prefix">Destination prefix.</param>
    /// <param name="io">IO settings, including the storage seam, for the pipeline the saver creates at its first save;
    /// <see langword="null"/> for the defaults.</param>
    /// <returns>The written prefix.</returns>
    /// <exception cref="ObjectDisposedException">The loaded checkpoint was disposed.</exception>
    /// <exception cref="IOException">Writing failed; files already at <paramref name="prefix"/> are left untouched.</exception>
    public string Write(string prefix, Pipeline.CheckpointPipelineOptions? io = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return Saver.Write(prefix, WriteOptions(pipeline: null, io));
    }

    /// <summary>
    /// <see cref="Write"/> through the IO pipeline: streams the variables from their device buffers via the pinned staging
    /// ring; same bytes as <see cref="Write"/>.
    /// </summary>
    /// <param name="prefix">Destination prefix.</param>
    /// <param name="pipeline">The IO device to use; <see langword="null"/> for one owned by <see cref="Saver"/> (freed by <see cref="DisposeAsync"/>).</param>
    /// <param name="cancellationToken">Cancels the save.</param>
    /// <returns>The save's handle; await its <c>Completion</c> for durability.</returns>
    /// <exception cref="ObjectDisposedException">The loaded checkpoint was disposed.</exception>
    public ValueTask<Pipeline.SaveHandle> WriteAsync(string prefix, Pipeline.CheckpointPipeline? pipeline = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return Saver.WriteAsync(prefix, WriteOptions(pipeline), cancellationToken);
    }

    /// <summary>Waits for queued asynchronous writes, frees the saver's IO pipeline, then disposes as <see cref="Dispose"/>.</summary>
    public async ValueTask DisposeAsync()
    {
        await Saver.DisposeAsync().ConfigureAwait(false);
        Dispose();
    }

    private CheckpointOptions WriteOptions(Pipeline.CheckpointPipeline? pipeline, Pipeline.CheckpointPipelineOptions? io = null) => new()
    {
        IO = io,
        WriteHasCheckpointValues = _writeHasCheckpointValues,
        ShardingPolicy = new KeepShardsPolicy(_shardOfKey, _shardCount),
        Pipeline = pipeline,
    };

    /// <summary>Disposes the status and every variable's device buffer.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        (Status as IDisposable)?.Dispose();
        try
        {
            Saver.DisposePipelinesAndWait();   // queued saves still read the variables: wait for them (bounded)
        }
        finally
        {
            foreach (var v in _variables) v.Variable.Dispose();
        }
    }

    private static int LoadObjectGraph(TrackableObjectGraph graph, TensorBundleReader reader, LoadedNode root, Accelerator accelerator, List<LoadedVariable> variables)
    {
        var objects = new Trackable?[graph.Nodes.Count];
        objects[0] = root;
        var hostValues = graph.Nodes[0].Attributes.Select(a => a.Name).Distinct(StringComparer.Ordinal).Count();
        var queue = new Queue<int>([0]);
        while (queue.Count > 0)
        {
            var id = queue.Dequeue();
            var parent = (AutoTrackable)objects[id]!;
            foreach (var edge in graph.Nodes[id].Children)
            {
                if (edge.NodeId < 0 || edge.NodeId >= objects.Length)
                    throw new CheckpointFormatException(CheckpointFormatError.MalformedProto, reader.IndexPath,
                        $"object graph node {id} has an edge '{edge.LocalName}' to node {edge.NodeId}, beyond the {objects.Length} nodes");
                if (objects[edge.NodeId] is { } existing)
                {
                    parent.Track(edge.LocalName, existing);
                    continue;
                }
                var node = graph.Nodes[edge.NodeId];
                if (IsSimpleVariable(node, reader, out var entry))
                {
                    var v = Variable.Create(parent, edge.LocalName, accelerator, entry.DType, entry.Shape, fullName: node.Attributes[0].FullName);
                    variables.Add(new LoadedVariable(entry.Key, v));
                    objects[edge.NodeId] = v;
                    continue;
                }
                AutoTrackable child;
                if (node.SlotVariables.Count > 0) child = new LoadedOptimizer();
                else
                {
                    var generic = new LoadedNode();
                    foreach (var a in node.Attributes)
                    {
                        if (generic.Has(a.Name)) continue;
                        // A key absent from the index is a multi-tensor value (lookup tables: table-keys / table-values).
                        if (reader.TryGetEntry(a.CheckpointKey, out _)) generic.AddHostValue(a.Name, a.FullName, a.OptionalRestore);
                        else generic.AddHostGroup(a.Name, a.FullName, a.OptionalRestore);
                        hostValues++;
                    }
                    child = generic;
                }
                objects[edge.NodeId] = child;
                parent.Track(edge.LocalName, child);
                queue.Enqueue(edge.NodeId);
            }
        }

        // Slot variables were created by their optimizers as the values arrived; name them by the graph's slot references.
        for (var id = 0; id < graph.Nodes.Count; id++)
        {
            if (objects[id] is not OptimizerBase optimizer) continue;
            foreach (var slot in graph.Nodes[id].SlotVariables)
            {
                if (slot.OriginalVariableNodeId < 0 || slot.OriginalVariableNodeId >= objects.Length) continue;
                if (objects[slot.OriginalVariableNodeId] is not Variable original) continue;
                if (optimizer.GetSlot(original, slot.SlotName) is not { } slotVariable) continue;
                var key = slot.SlotVariableNodeId >= 0 && slot.SlotVariableNodeId < graph.Nodes.Count && graph.Nodes[slot.SlotVariableNodeId].Attributes.Count > 0
                    ? graph.Nodes[slot.SlotVariableNodeId].Attributes[0].CheckpointKey
                    : $"{original.Name}/{slot.SlotName}";
                variables.Add(new LoadedVariable(key, slotVariable));
            }
        }
        return hostValues;
    }

    private static int LoadNameBased(TensorBundleReader reader, LoadedNode root, Accelerator accelerator, List<LoadedVariable> variables)
    {
        var hostValues = 0;
        foreach (var entry in reader.Entries)
        {
            if (entry.Key.Length == 0 || entry.IsSliceEntry) continue;
            if (DTypes.IsFixedSize(entry.DType))
            {
                var v = Variable.Create(root, entry.Key, accelerator, entry.DType, entry.Shape, fullName: entry.Key);
                variables.Add(new LoadedVariable(entry.Key, v));
            }
            else
            {
                var holder = new LoadedNode();
                holder.AddHostValue(CheckpointKeys.VariableValue, entry.Key, optionalRestore: false);
                root.Track(entry.Key, holder);
                hostValues++;
            }
        }
        return hostValues;
    }

    private static bool IsSimpleVariable(TrackableObjectGraph.Types.TrackableObject node, TensorBundleReader reader, out BundleEntry entry)
    {
        entry = null!;
        return node.Attributes.Count == 1 && node.Attributes[0].Name == CheckpointKeys.VariableValue && node.Children.Count == 0
            && reader.TryGetEntry(node.Attributes[0].CheckpointKey, out entry!) && DTypes.IsFixedSize(entry.DType) && !entry.IsPartitioned;
    }

    /// <summary>A mirrored non-variable node: its attributes are kept in host memory exactly as stored.</summary>
    private sealed class LoadedNode : AutoTrackable
    {
        private readonly List<SaveableValue> _values = [];

        /// <summary>True when an attribute of that name exists already (a checkpoint may list one twice; TF objects cannot have two).</summary>
        public bool Has(string name) => _values.Exists(v => string.Equals(v.Name, name, StringComparison.Ordinal));

        public void AddHostValue(string name, string fullName, bool optionalRestore)
        {
            if (Has(name)) return;
            HostTensor? value = null;
            _values.Add(new HostTensorValue(name, () => value ?? throw new InvalidOperationException($"'{name}' was never restored."),
                v => value = v, fullName: fullName, optionalRestore: optionalRestore));
        }

        public void AddHostGroup(string name, string fullName, bool optionalRestore)
        {
            if (Has(name)) return;
            IReadOnlyDictionary<string, HostTensor>? values = null;
            _values.Add(new HostTensorGroupValue(name,
                () => (values ?? throw new InvalidOperationException($"'{name}' was never restored.")).ToList(),
                v => values = v, fullName, optionalRestore));
        }

        protected internal override IReadOnlyList<SaveableValue> GetSaveableValues() => _values;
    }

    /// <summary>A mirrored optimizer: creates each slot when its checkpoint value arrives, named as stored.</summary>
    private sealed class LoadedOptimizer() : OptimizerBase("optimizer")
    {
        protected override string GetSlotFullName(Variable variable, string slotName, string? checkpointFullName) =>
            checkpointFullName ?? base.GetSlotFullName(variable, slotName, checkpointFullName);
    }

    /// <summary>
    /// Puts every key back in the shard it came from (group values match by key prefix). When some declared shard would
    /// get no tensor (a header declaring unused shards, or values that were not restored), the used shards are numbered
    /// 0..k-1 in their original order instead, since a data file is never left empty; TF-written checkpoints use every
    /// shard and keep their layout.
    /// </summary>
    private sealed class KeepShardsPolicy(IReadOnlyDictionary<string, int> shardOfKey, int shardCount) : IShardingPolicy
    {
        public ShardAssignment AssignShards(IReadOnlyList<ShardableTensor> tensors)
        {
            var shards = tensors.Select(t => shardOfKey.TryGetValue(t.Key, out var s) ? s
                : shardOfKey.FirstOrDefault(kv => kv.Key.StartsWith(t.Key, StringComparison.Ordinal)).Value).ToArray();
            var used = shards.Distinct().Order().ToArray();
            if (used.Length == shardCount) return new(shardCount, shards);
            var renumber = used.Select((s, i) => (s, i)).ToDictionary(p => p.s, p => p.i);
            return new(Math.Max(1, used.Length), shards.Select(s => renumber[s]).ToArray());
        }
    }
}

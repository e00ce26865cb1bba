using CheckpointGpu.Format.Protos;
using CheckpointGpu.IO;

namespace CheckpointGpu;

/// <summary>
/// State of one object-based <c>Restore</c>/<c>Read</c> call (TF's <c>_CheckpointRestoreCoordinator</c>,
/// <c>tensorflow/python/checkpoint/checkpoint.py</c>, and the walk in <c>restore.py</c>; spec §7.2–7.4).
/// </summary>
/// <remarks>
/// Lives as long as deferred positions may still fire. Holds the checkpoint open only while some checkpointed value
/// is still unmatched; it reopens the bundle on demand after that.
/// </remarks>
internal sealed class RestoreCoordinator : IDisposable
{
    private static long s_lastUid;
    private readonly Func<ITensorReader> _openReader;
    private ITensorReader? _reader;
    private readonly int _valueNodeCount;
    private bool _reported;

    public RestoreCoordinator(string prefix, ITensorReader reader, Func<ITensorReader> reopen, TrackableObjectGraph graph,
        CheckpointOptions options, TextWriter? log, PendingValues? pending = null)
    {
        Pending = pending ?? new PendingValues();
        RestoreUid = NewUid();
        Prefix = prefix;
        _reader = reader;
        _openReader = reopen;
        Graph = graph;
        Options = options;
        Log = log;
        NodeNames = Format.CheckpointKeys.NodeDisplayNames(graph);
        for (var id = 0; id < graph.Nodes.Count; id++)
        {
            var node = graph.Nodes[id];
            if (node.Attributes.Count > 0) _valueNodeCount++;
            if (options.SkipSlotVariables) continue;
            foreach (var slot in node.SlotVariables)
            {
                CheckNodeId(slot.OriginalVariableNodeId);
                CheckNodeId(slot.SlotVariableNodeId);
                if (!SlotRestorations.TryGetValue(slot.OriginalVariableNodeId, out var list))
                    SlotRestorations[slot.OriginalVariableNodeId] = list = [];
                list.Add(new SlotRestoration(id, slot.SlotVariableNodeId, slot.SlotName));
            }
            foreach (var child in node.Children) CheckNodeId(child.NodeId);
        }
    }

    internal static long NewUid() => Interlocked.Increment(ref s_lastUid);

    public long RestoreUid { get; }
    public string Prefix { get; }
    public TrackableObjectGraph Graph { get; }
    public CheckpointOptions Options { get; }
    public TextWriter? Log { get; }
    public string[] NodeNames { get; }
    public bool ExpectPartial { get; set; }

    /// <summary>Device copies of this restore that may still be landing (restore-on-create).</summary>
    public PendingValues Pending { get; }

    public Dictionary<int, Trackable> ObjectByProtoId { get; } = [];
    public HashSet<int> MatchedProtoIds { get; } = [];
    public HashSet<Trackable> AllTrackables { get; } = new(ReferenceEqualityComparer.Instance);
    /// <summary>Original-variable node → slots to restore when that variable is bound.</summary>
    public Dictionary<int, List<SlotRestoration>> SlotRestorations { get; } = [];
    /// <summary>Optimizer node → slot restorations waiting for the optimizer to be bound.</summary>
    public Dictionary<int, List<DeferredSlotRestoration>> DeferredSlotRestorations { get; } = [];
    /// <summary>Node → checkpoint attribute names the bound object does not have.</summary>
    public Dictionary<int, List<string>> UnusedAttributes { get; } = [];

    public ITensorReader Reader => _reader ??= _openReader();

    public StoredTensorInfo GetInfo(string key, string objectPath)
    {
        if (!Reader.TryGetInfo(key, out var info))
            throw new KeyNotFoundException($"{Prefix}.index: key '{key}' (referenced by object {objectPath} in the object graph) is not in the checkpoint.");
        return info;
    }

    public void Warn(string message) => Log?.WriteLine("WARNING: " + message);

    private void CheckNodeId(int id)
    {
        if (id < 0 || id >= Graph.Nodes.Count)
            throw new Format.CheckpointFormatException(Format.CheckpointFormatError.MalformedProto, Format.BundleNaming.IndexFile(Prefix),
                $"the object graph references node {id}, but it has {Graph.Nodes.Count} nodes", Format.CheckpointKeys.ObjectGraph);
    }

    // ------------------------------------------------------------------ variables a walk creates (optimizer slots)

    private readonly List<CreatedVariable> _created = [];
    private int _walkDepth;
    private bool _batchOpen;

    /// <summary>
    /// Records a variable this restore created and registered somewhere (an optimizer slot made by restore-on-create):
    /// it stays provisional until the walk that made it — or, for the top-level walk, the restore's batch — has landed
    /// every value; if that fails, <paramref name="unregister"/> runs and the variable is disposed.
    /// </summary>
    public void RecordCreated(Variable variable, int protoId, Action unregister) => _created.Add(new CreatedVariable(variable, protoId, unregister));

    /// <summary>The top-level walk of a restore begins: its created variables stay provisional until <see cref="CompleteBatch"/>.</summary>
    public void BeginBatch() => _batchOpen = true;

    /// <summary>The restore's batch landed: the variables its walk created are kept.</summary>
    public void CompleteBatch()
    {
        _batchOpen = false;
        if (_walkDepth == 0) _created.Clear();
    }

    /// <summary>
    /// The restore failed (a corrupt value, a mismatch, cancellation): every variable its walk created is unregistered and
    /// disposed, so the objects that own them (optimizers) are as they were before the call.
    /// </summary>
    public void FailBatch()
    {
        _batchOpen = false;
        RollBackCreated(0);
    }

    /// <summary>Unregisters and disposes the variables created since <paramref name="mark"/>, newest first, and unbinds their nodes.</summary>
    private void RollBackCreated(int mark)
    {
        for (var i = _created.Count - 1; i >= mark; i--)
        {
            var (variable, protoId, unregister) = _created[i];
            unregister();
            if (ObjectByProtoId.TryGetValue(protoId, out var bound) && ReferenceEquals(bound, variable))
            {
                ObjectByProtoId.Remove(protoId);
                MatchedProtoIds.Remove(protoId);
            }
            AllTrackables.Remove(variable);
            variable.Dispose();   // after the copies already queued on it (the engine has drained its own)
        }
        if (mark < _created.Count) _created.RemoveRange(mark, _created.Count - mark);
    }

    /// <summary>TF's <c>_restore_descendants</c>: breadth-first over newly bound positions, then the queued reads.</summary>
    /// <remarks>
    /// A walk that fails (here, or in the read flush it ends with) unregisters and disposes the variables it created; an
    /// outermost walk outside the top-level batch keeps them once its reads have landed.
    /// </remarks>
    public void RestoreDescendants(CheckpointPosition start)
    {
        var mark = _created.Count;
        _walkDepth++;
        try
        {
            RestoreDescendantsCore(start);
        }
        catch
        {
            RollBackCreated(mark);
            throw;
        }
        finally
        {
            _walkDepth--;
        }
        if (_walkDepth == 0 && !_batchOpen) _created.Clear();
    }

    private void RestoreDescendantsCore(CheckpointPosition start)
    {
        var visit = new Queue<(CheckpointPosition Position, Trackable Object)>();
        visit.Enqueue((start, ObjectByProtoId[start.ProtoId]));
        var reads = new List<(SaveableValue Attribute, string Key, CheckpointPosition Position)>();
        while (visit.Count > 0)
        {
            var (position, trackable) = visit.Dequeue();
            SingleRestore(position, trackable, reads);
            QueueChildren(position, trackable, visit);
            QueueSlotVariables(position, trackable, visit);
        }
        if (reads.Count > 0)
        {
            // One engine pass for the whole subtree: queued while walking, streamed in file order at the end. The top-level
            // walk of a restore is already batching (its caller awaits the flush); a later walk (restore-on-create) flushes here.
            var engine = Reader as EngineTensorReader;
            var outer = engine?.Batching ?? true;
            if (engine is not null) engine.Batching = true;
            try
            {
                ExecuteReads(reads);
            }
            finally
            {
                if (engine is not null) engine.Batching = outer;
            }
            if (!outer) SyncWait.Run(() => engine!.FlushAsync(CancellationToken.None));
        }
        CloseReaderIfDone();
    }

    private void SingleRestore(CheckpointPosition position, Trackable trackable, List<(SaveableValue, string, CheckpointPosition)> reads)
    {
        // Precedence by uid: an object already restored by this or a newer restore is left alone (spec §7.7).
        if (RestoreUid <= trackable.UpdateUid) return;
        var proto = position.ObjectProto;
        if (proto.Attributes.Count > 0)
        {
            var attributes = trackable.GetSaveableValues();
            foreach (var serialized in proto.Attributes)
            {
                SaveableValue? match = null;
                foreach (var a in attributes)
                    if (string.Equals(a.Name, serialized.Name, StringComparison.Ordinal)) { match = a; break; }
                if (match is null)
                {
                    // TF: a missing attribute is only "unused" when the checkpoint does not mark it optional.
                    if (serialized.OptionalRestore) continue;
                    if (!UnusedAttributes.TryGetValue(position.ProtoId, out var unused)) UnusedAttributes[position.ProtoId] = unused = [];
                    unused.Add(serialized.Name);
                    continue;
                }
                reads.Add((match, serialized.CheckpointKey, position));
            }
        }
        trackable.UpdateUid = RestoreUid;
    }

    private void QueueChildren(CheckpointPosition position, Trackable trackable, Queue<(CheckpointPosition, Trackable)> visit)
    {
        foreach (var child in position.ObjectProto.Children)
        {
            if (ObjectByProtoId.ContainsKey(child.NodeId)) continue;
            var childPosition = new CheckpointPosition(this, child.NodeId);
            var local = trackable.LookupDependency(child.LocalName);
            if (local is null)
            {
                var childProto = childPosition.ObjectProto;
                var hasValue = childProto.HasCheckpointValues
                    ?? (childProto.Children.Count > 0 || childProto.Attributes.Count > 0 || childProto.SlotVariables.Count > 0 || childProto.RegisteredSaver is not null);
                if (hasValue) trackable.AddDeferredDependency(child.LocalName, childPosition);
            }
            else if (childPosition.BindObject(local))
            {
                visit.Enqueue((childPosition, local));
            }
        }
    }

    private void QueueSlotVariables(CheckpointPosition position, Trackable trackable, Queue<(CheckpointPosition, Trackable)> visit)
    {
        // This object as an optimizer: replay slot restorations that waited for it.
        if (DeferredSlotRestorations.Remove(position.ProtoId, out var deferred))
        {
            foreach (var d in deferred)
            {
                if (trackable is not OptimizerBase optimizer) continue;
                var slotPosition = new CheckpointPosition(this, d.SlotVariableId);
                var slot = optimizer.CreateOrRestoreSlotVariable(slotPosition, d.OriginalVariable, d.SlotName);
                if (slot is not null && slotPosition.BindObject(slot)) visit.Enqueue((slotPosition, slot));
            }
        }
        // This object as an original variable: restore its slots now, or wait for the optimizer.
        if (SlotRestorations.Remove(position.ProtoId, out var restorations))
        {
            foreach (var r in restorations)
            {
                if (trackable is not Variable variable) continue;
                if (!ObjectByProtoId.TryGetValue(r.OptimizerId, out var optimizerObject))
                {
                    if (!DeferredSlotRestorations.TryGetValue(r.OptimizerId, out var list)) DeferredSlotRestorations[r.OptimizerId] = list = [];
                    list.Add(new DeferredSlotRestoration(variable, r.SlotVariableId, r.SlotName));
                }
                else if (optimizerObject is OptimizerBase optimizer)
                {
                    var slotPosition = new CheckpointPosition(this, r.SlotVariableId);
                    var slot = optimizer.CreateOrRestoreSlotVariable(slotPosition, variable, r.SlotName);
                    if (slot is not null && slotPosition.BindObject(slot)) visit.Enqueue((slotPosition, slot));
                }
            }
        }
    }

    private void ExecuteReads(List<(SaveableValue Attribute, string Key, CheckpointPosition Position)> reads)
    {
        if (reads.Count == 0) return;
        var reader = Reader;
        var resolved = new List<(SaveableValue Attribute, string Key, CheckpointPosition Position, StoredTensorInfo Info)>(reads.Count);
        foreach (var (attribute, key, position) in reads)
        {
            if (attribute is HostTensorGroupValue group)
            {
                // Multi-spec saveables: the graph names the prefix; the tensors are prefix + suffix.
                var keys = reader.Keys.Where(k => k.Length > key.Length && k.StartsWith(key, StringComparison.Ordinal)
                    && !k.AsSpan(key.Length).Contains('/')).Order(StringComparer.Ordinal).ToList();
                if (keys.Count == 0) GetInfo(key, position.ObjectPath);   // throws KeyNotFoundException
                group.RestoreGroup(reader, keys, key);
                continue;
            }
            resolved.Add((attribute, key, position, GetInfo(key, position.ObjectPath)));
        }
        // Read in file order: sequential I/O within each data file.
        resolved.Sort((a, b) => a.Info.ShardId != b.Info.ShardId ? a.Info.ShardId.CompareTo(b.Info.ShardId) : a.Info.Offset.CompareTo(b.Info.Offset));
        foreach (var (attribute, key, position, info) in resolved)
            attribute.Restore(reader, key, info, position.ObjectPath);
    }

    /// <summary>True when every checkpointed value has been matched and no slot restoration is pending.</summary>
    public bool IsFullyMatched
    {
        get
        {
            if (SlotRestorations.Count > 0 || DeferredSlotRestorations.Count > 0) return false;
            var matchedWithValues = 0;
            foreach (var id in MatchedProtoIds)
                if (Graph.Nodes[id].Attributes.Count > 0) matchedWithValues++;
            return matchedWithValues == _valueNodeCount;
        }
    }

    /// <summary>Releases the checkpoint files (and a pipeline opened for this restore) once nothing is left to match.</summary>
    public void CloseReaderIfDone()
    {
        if (_reader is not null && IsFullyMatched && _reader is not EngineTensorReader { Batching: true })
        {
            _reader.Dispose();
            _reader = null;
        }
    }

    /// <summary>Checkpoint keys of value nodes not bound yet (what restore-on-create may still ask for).</summary>
    public IEnumerable<string> UnmatchedValueKeys()
    {
        var skipped = SkippedSlotNodes();
        for (var id = 0; id < Graph.Nodes.Count; id++)
        {
            if (MatchedProtoIds.Contains(id) || skipped.Contains(id)) continue;
            foreach (var a in Graph.Nodes[id].Attributes) yield return a.CheckpointKey;
        }
    }

    /// <summary>Checkpoint nodes with values that no live object was bound to (TF's deleter warning list).</summary>
    public List<string> UnmatchedValueNodes()
    {
        var result = new List<string>();
        var skipped = SkippedSlotNodes();
        for (var id = 0; id < Graph.Nodes.Count; id++)
            if (Graph.Nodes[id].Attributes.Count > 0 && !MatchedProtoIds.Contains(id) && !skipped.Contains(id))
                result.Add(NodeNames[id]);
        return result;
    }

    public HashSet<int> SkippedSlotNodes()
    {
        var set = new HashSet<int>();
        if (!Options.SkipSlotVariables) return set;
        foreach (var node in Graph.Nodes)
            foreach (var slot in node.SlotVariables) set.Add(slot.SlotVariableNodeId);
        return set;
    }

    /// <summary>Writes TF's "deleted with unrestored values" warning once, unless <see cref="ExpectPartial"/>.</summary>
    public void ReportUnrestored()
    {
        if (_reported) return;
        _reported = true;
        if (ExpectPartial || Log is null) return;
        var unusedNodes = UnmatchedValueNodes();
        if (unusedNodes.Count == 0 && UnusedAttributes.Count == 0) return;
        Log.WriteLine("WARNING: A checkpoint restore is being released with unrestored values (from " + Prefix
            + "). To silence these warnings, call ExpectPartial() on the LoadStatus.");
        foreach (var node in unusedNodes)
            Log.WriteLine("WARNING: Value in checkpoint could not be found in the restored object: " + node);
        foreach (var (id, names) in UnusedAttributes)
            foreach (var name in names)
                Log.WriteLine($"WARNING: An attribute in the restored object could not be found in the checkpoint. Object: {NodeNames[id]}, attribute: {name}");
    }

    public void Dispose()
    {
        ReportUnrestored();
        _reader?.Dispose();
        _reader = null;
    }

}

/// <summary>A slot to restore when its original variable is bound.</summary>
internal readonly record struct SlotRestoration(int OptimizerId, int SlotVariableId, string SlotName);

/// <summary>A variable a walk created, the node it was bound to, and how to unregister it from its owner.</summary>
internal readonly record struct CreatedVariable(Variable Variable, int ProtoId, Action Unregister);

/// <summary>A slot restoration waiting for its optimizer to be bound.</summary>
internal readonly record struct DeferredSlotRestoration(Variable OriginalVariable, int SlotVariableId, string SlotName);

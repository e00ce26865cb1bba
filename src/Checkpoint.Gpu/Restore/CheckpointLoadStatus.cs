namespace CheckpointGpu;

/// <summary>
/// Status of a restore from an object-based checkpoint (TF's <c>CheckpointLoadStatus</c>). Deferred values keep
/// landing after <c>Restore</c> returns, so assertions reflect the state at the moment they are called.
/// </summary>
/// <remarks>Thread-safety: not thread-safe.</remarks>
public sealed class CheckpointLoadStatus : LoadStatus
{
    private readonly RestoreCoordinator _checkpoint;
    private readonly ObjectGraphView _view;

    internal CheckpointLoadStatus(RestoreCoordinator checkpoint, ObjectGraphView view)
    {
        _checkpoint = checkpoint;
        _view = view;
    }

    /// <summary>The checkpoint prefix that was read.</summary>
    public string CheckpointPath => _checkpoint.Prefix;

    /// <summary>Uid of this restore (restores with higher uids take precedence).</summary>
    public long RestoreUid => _checkpoint.RestoreUid;

    /// <summary>Readable names of checkpoint nodes with values that are not (yet) bound to a live object.</summary>
    public IReadOnlyList<string> UnmatchedCheckpointValues => _checkpoint.UnmatchedValueNodes();

    internal RestoreCoordinator Coordinator => _checkpoint;

    /// <inheritdoc/>
    public override async Task<LoadStatus> WaitAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        await _checkpoint.Pending.WhenAll().WaitAsync(cancellationToken).ConfigureAwait(false);
        return this;
    }

    /// <inheritdoc/>
    public override LoadStatus AssertConsumed()
    {
        AssertExistingObjectsMatched();
        var skipped = _checkpoint.SkippedSlotNodes();
        var unresolved = new List<string>();
        for (var id = 0; id < _checkpoint.Graph.Nodes.Count; id++)
        {
            var node = _checkpoint.Graph.Nodes[id];
            if (node.Attributes.Count == 0 || skipped.Contains(id)) continue;
            if (!_checkpoint.ObjectByProtoId.ContainsKey(id))
                unresolved.Add($"{_checkpoint.NodeNames[id]} ({string.Join(", ", node.Attributes.Select(a => a.CheckpointKey))})");
        }
        if (unresolved.Count > 0)
            throw new CheckpointMismatchException($"Unresolved objects in checkpoint: {unresolved.Count} checkpointed value(s) have no matching live object.",
                _checkpoint.Prefix, unresolved.Count == 1 ? unresolved[0] : null, null, null, null, unresolved);
        if (!_checkpoint.Options.SkipSlotVariables && (_checkpoint.SlotRestorations.Count > 0 || _checkpoint.DeferredSlotRestorations.Count > 0))
        {
            var pending = _checkpoint.SlotRestorations.SelectMany(kv => kv.Value.Select(r => _checkpoint.NodeNames[r.SlotVariableId]))
                .Concat(_checkpoint.DeferredSlotRestorations.SelectMany(kv => kv.Value.Select(r => _checkpoint.NodeNames[r.SlotVariableId])))
                .ToList();
            throw new CheckpointMismatchException("Unresolved slot restorations (the optimizer or the variable was never matched).",
                _checkpoint.Prefix, null, null, null, null, pending);
        }
        if (_checkpoint.UnusedAttributes.Count > 0)
        {
            var lines = _checkpoint.UnusedAttributes.SelectMany(kv => kv.Value.Select(a => $"{_checkpoint.NodeNames[kv.Key]}: attribute '{a}'")).ToList();
            throw new CheckpointMismatchException("Unused attributes in these objects (the attributes exist in the checkpoint but were not restored).",
                _checkpoint.Prefix, null, null, null, null, lines);
        }
        return this;
    }

    /// <inheritdoc/>
    public override LoadStatus AssertExistingObjectsMatched()
    {
        foreach (var (id, trackable) in _checkpoint.ObjectByProtoId)
        {
            if (trackable.UpdateUid < _checkpoint.RestoreUid)
                throw new CheckpointMismatchException("Object not assigned a value from this checkpoint.", _checkpoint.Prefix,
                    _checkpoint.NodeNames[id], null, null, null);
        }
        var unmatched = UnmatchedLiveObjects();
        if (unmatched.Count > 0)
            throw new CheckpointMismatchException(
                $"Found {unmatched.Count} live object(s) with values that were not bound to checkpointed values, likely because the program's objects differ from the checkpoint's.",
                _checkpoint.Prefix, unmatched.Count == 1 ? unmatched[0] : null, null, null, null, unmatched);
        return this;
    }

    /// <inheritdoc/>
    public override LoadStatus AssertNontrivialMatch()
    {
        AddReachableObjects();
        if (_checkpoint.ObjectByProtoId.Count <= 1)
        {
            var unmatched = UnmatchedLiveObjects();
            if (unmatched.Count > 0)
                throw new CheckpointMismatchException(
                    "Nothing except the root object matched a checkpointed value. Typically this means that the checkpoint does not match the program. These objects have no matching checkpointed value:",
                    _checkpoint.Prefix, null, null, null, null, unmatched);
            throw new CheckpointMismatchException($"Nothing to load: no dependencies have been added to the root ({_view.Root.GetType().Name}) yet.",
                _checkpoint.Prefix, "(root)", null, null, null);
        }
        return this;
    }

    /// <inheritdoc/>
    public override LoadStatus ExpectPartial()
    {
        _checkpoint.ExpectPartial = true;
        return this;
    }

    /// <summary>Objects with values that are reachable (or were seen by this restore) but not bound.</summary>
    private List<string> UnmatchedLiveObjects()
    {
        var names = AddReachableObjects();
        var bound = new HashSet<Trackable>(_checkpoint.ObjectByProtoId.Values, ReferenceEqualityComparer.Instance);
        var result = new List<string>();
        foreach (var obj in _checkpoint.AllTrackables)
        {
            if (bound.Contains(obj) || obj.GetSaveableValues().Count == 0) continue;
            result.Add(names.TryGetValue(obj, out var n) ? n : obj.ToString() ?? obj.GetType().Name);
        }
        return result;
    }

    private Dictionary<Trackable, string> AddReachableObjects()
    {
        var snapshot = ObjectGraphSnapshot.Build(_view.Root, includeSlotVariables: !_checkpoint.Options.SkipSlotVariables);
        var names = new Dictionary<Trackable, string>(ReferenceEqualityComparer.Instance);
        foreach (var node in snapshot.Nodes)
        {
            names[node.Object] = node.ReadablePath;
            // Empty list/dict wrappers own nothing and are not required to match (TF skips empty data structures).
            _checkpoint.AllTrackables.Add(node.Object);
        }
        return names;
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) _checkpoint.Dispose();
        base.Dispose(disposing);
    }
}

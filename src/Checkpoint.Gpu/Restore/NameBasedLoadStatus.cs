namespace CheckpointGpu;

/// <summary>
/// Status of a restore from a TF1 name-based checkpoint (TF's <c>NameBasedSaverStatus</c>): attributes are matched by
/// variable name. All three assertions behave like <see cref="AssertConsumed"/> (spec §7.9).
/// </summary>
/// <remarks>Thread-safety: not thread-safe.</remarks>
public sealed class NameBasedLoadStatus : LoadStatus
{
    private readonly NameBasedRestoreCoordinator _checkpoint;
    private readonly ObjectGraphView _view;
    private readonly HashSet<Trackable> _optionallyRestored = new(ReferenceEqualityComparer.Instance);

    internal NameBasedLoadStatus(NameBasedRestoreCoordinator checkpoint, ObjectGraphView view)
    {
        _checkpoint = checkpoint;
        _view = view;
    }

    /// <summary>The checkpoint prefix that was read.</summary>
    public string CheckpointPath => _checkpoint.Prefix;

    /// <summary>Variable names found in the checkpoint and restored so far.</summary>
    public IReadOnlyCollection<string> RestoredNames => _checkpoint.RestoredNames;

    internal void AddToOptionallyRestored(Trackable trackable) => _optionallyRestored.Add(trackable);

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
        var unused = _checkpoint.UnusedAttributes.Where(kv => !_optionallyRestored.Contains(kv.Key))
            .SelectMany(kv => kv.Value.Select(n => $"{kv.Key}: '{n}'")).ToList();
        if (unused.Count > 0)
            throw new CheckpointMismatchException("Some objects had attributes which were not restored (no such name in the checkpoint):",
                _checkpoint.Prefix, null, null, null, null, unused);
        var snapshot = ObjectGraphSnapshot.Build(_view.Root, includeSlotVariables: true);
        var notRestored = snapshot.Nodes.Where(n => n.Object.UpdateUid < _checkpoint.RestoreUid).Select(n => n.ReadablePath).ToList();
        if (notRestored.Count > 0)
            throw new CheckpointMismatchException("Objects not restored by this name-based restore:", _checkpoint.Prefix, null, null, null, null, notRestored);
        return this;
    }

    /// <inheritdoc/>
    public override LoadStatus AssertExistingObjectsMatched() => AssertConsumed();

    /// <inheritdoc/>
    public override LoadStatus AssertNontrivialMatch() => AssertConsumed();

    /// <inheritdoc/>
    public override LoadStatus ExpectPartial() => this;

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) _checkpoint.Dispose();
        base.Dispose(disposing);
    }
}

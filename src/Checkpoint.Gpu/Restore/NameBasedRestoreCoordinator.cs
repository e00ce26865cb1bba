using CheckpointGpu.IO;

namespace CheckpointGpu;

/// <summary>
/// State of one restore from a TF1 name-based checkpoint (no object graph): each live attribute is looked up by its
/// <c>full_name</c> (TF's <c>_NameBasedRestoreCoordinator</c>, <c>checkpoint.py</c>; spec §7.9).
/// </summary>
internal sealed class NameBasedRestoreCoordinator : IDisposable
{
    private readonly Func<ITensorReader> _openReader;
    private ITensorReader? _reader;

    public NameBasedRestoreCoordinator(string prefix, ITensorReader reader, Func<ITensorReader> reopen, PendingValues? pending = null)
    {
        Pending = pending ?? new PendingValues();
        RestoreUid = RestoreCoordinator.NewUid();
        Prefix = prefix;
        _reader = reader;
        _openReader = reopen;
    }

    public long RestoreUid { get; }
    public string Prefix { get; }
    public ITensorReader Reader => _reader ??= _openReader();

    /// <summary>Device copies of this restore that may still be landing (restore-on-create).</summary>
    public PendingValues Pending { get; }

    /// <summary>Objects → attribute names (TF1 names) missing from the checkpoint.</summary>
    public Dictionary<Trackable, List<string>> UnusedAttributes { get; } = new(ReferenceEqualityComparer.Instance);

    /// <summary>Names that were restored (for diagnostics).</summary>
    public HashSet<string> RestoredNames { get; } = new(StringComparer.Ordinal);

    /// <summary>TF's <c>eager_restore</c>: restore every attribute of <paramref name="trackable"/> found by name.</summary>
    public void EagerRestore(Trackable trackable)
    {
        foreach (var attribute in trackable.GetSaveableValues())
        {
            var name = attribute.FullName;
            if (name.Length == 0 || !Reader.TryGetInfo(name, out var info))
            {
                if (!UnusedAttributes.TryGetValue(trackable, out var list)) UnusedAttributes[trackable] = list = [];
                list.Add(name.Length == 0 ? attribute.Name : name);
                continue;
            }
            attribute.Restore(Reader, name, info, name);
            RestoredNames.Add(name);
        }
    }

    public void Dispose()
    {
        _reader?.Dispose();
        _reader = null;
    }
}

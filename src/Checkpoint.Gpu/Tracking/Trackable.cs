using CheckpointGpu.Devices;
using CheckpointGpu.Format;

namespace CheckpointGpu;

/// <summary>
/// Base class of every object that can be saved in, and restored from, an object-based checkpoint: it has named
/// dependency edges to other trackables (in tracking order) and optionally saveable attributes of its own
/// (a <see cref="Variable"/> saves <c>VARIABLE_VALUE</c>). Mirrors TensorFlow's <c>Trackable</c>
/// (<c>tensorflow/python/trackable/base.py</c>).
/// </summary>
/// <remarks>
/// <para><b>Dependencies.</b> Edges are kept in the order they were first tracked; that order fixes the breadth-first
/// node numbering of the saved object graph (spec §6.3), so it must be deterministic. Subclasses add edges with
/// <see cref="TrackDependency{T}(string, T, bool)"/> (TF's <c>_track_trackable</c>) and may override
/// <see cref="GetChildren"/> and <see cref="LookupDependency(string)"/> to expose edges computed on the fly.</para>
/// <para><b>Restore-on-create.</b> When a restore reaches this object but a checkpointed child has no live
/// counterpart yet, the child's position is parked in this object's deferred-dependency queue under the edge name.
/// Tracking a child under that name later restores it at once (highest restore first); creating a variable through
/// <see cref="AddVariable"/> takes its initial value straight from the checkpoint instead (spec §7.3).</para>
/// <para>Thread-safety: trackables are not thread-safe; build, save and restore one object tree from one thread at a time.</para>
/// </remarks>
public abstract class Trackable
{
    private readonly List<TrackableReference> _dependencies = [];
    private readonly Dictionary<string, int> _dependencyIndex = new(StringComparer.Ordinal);
    private Dictionary<string, List<CheckpointPosition>>? _deferred;
    private List<NameBasedRestoreCoordinator>? _nameBasedRestores;

    /// <summary>Creates a trackable with no dependencies.</summary>
    protected Trackable() { }

    /// <summary>
    /// Uid of the newest restore applied to this object (TF's <c>_update_uid</c>); -1 when none. A restore with a
    /// lower uid than this is ignored, so the most recent <c>Restore</c> call wins (spec §7.7).
    /// </summary>
    internal long UpdateUid { get; set; } = -1;

    /// <summary>The dependencies added with <see cref="TrackDependency{T}(string, T, bool)"/>, in tracking order.</summary>
    protected IReadOnlyList<TrackableReference> TrackedDependencies => _dependencies;

    /// <summary>
    /// The object's named children in tracking order (TF's <c>_trackable_children</c>). The default returns the
    /// edges added with <see cref="TrackDependency{T}(string, T, bool)"/>.
    /// </summary>
    /// <returns>The edges; names are unique. Must return the same order every time for an unchanged object.</returns>
    public virtual IReadOnlyList<TrackableReference> GetChildren() => _dependencies;

    /// <summary>
    /// The values this object itself saves (TF's <c>_serialize_to_tensors</c> keys): for a <see cref="Variable"/>
    /// one <c>VARIABLE_VALUE</c> attribute; for custom state (<see cref="TrackableState"/>) a <c>py_state</c>
    /// tensor. The default has none.
    /// </summary>
    /// <returns>Attributes with unique names, in a stable order (that order is the order of the tensors in the data file).</returns>
    protected internal virtual IReadOnlyList<SaveableValue> GetSaveableValues() => [];

    /// <summary>Finds the child tracked under <paramref name="name"/> (TF's <c>_lookup_dependency</c>).</summary>
    /// <param name="name">Edge name.</param>
    /// <returns>The child, or <see langword="null"/>.</returns>
    protected internal virtual Trackable? LookupDependency(string name)
    {
        if (_dependencyIndex.TryGetValue(name, out var index)) return _dependencies[index].Target;
        // Subclasses that compute their children may not use the tracked list.
        foreach (var child in GetChildren())
            if (string.Equals(child.Name, name, StringComparison.Ordinal)) return child.Target;
        return null;
    }

    /// <summary>
    /// Adds a named dependency (TF's <c>_track_trackable</c>, <c>base.py</c>). A new name is appended at the end of
    /// the tracking order and any restore deferred under that name is applied to <paramref name="child"/> now.
    /// </summary>
    /// <typeparam name="T">The child's type.</typeparam>
    /// <param name="name">Edge name; non-empty.</param>
    /// <param name="child">The child object.</param>
    /// <param name="overwrite">When the name is already tracked with another object, replace it in place instead of throwing.</param>
    /// <returns><paramref name="child"/>.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="name"/> or <paramref name="child"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="name"/> is empty, or is already tracked with a different object and <paramref name="overwrite"/> is false (TF: <c>ValueError</c>).</exception>
    /// <exception cref="CheckpointMismatchException">A deferred restore for <paramref name="name"/> does not fit <paramref name="child"/>.</exception>
    protected internal T TrackDependency<T>(string name, T child, bool overwrite = false) where T : Trackable
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(child);
        if (name.Length == 0) throw new ArgumentException("A dependency name must not be empty.", nameof(name));
        // A self-edge is legal, as in TF (base.py _track_trackable does not forbid it; TF 2.11+ Keras graphs contain one,
        // an edge named 'root' back to node 0): the breadth-first numbering visits every object once, so cycles are harmless.
        var current = LookupDependency(name);
        if (current is not null && !ReferenceEquals(current, child))
        {
            if (!overwrite)
                throw new ArgumentException($"A different object is already tracked as dependency '{name}'. Names must be unique (or pass overwrite: true).", nameof(name));
            if (_dependencyIndex.TryGetValue(name, out var index))
                _dependencies[index] = new TrackableReference(name, child);
            else
                AppendDependency(name, child);
        }
        else if (current is null)
        {
            AppendDependency(name, child);
            HandleDeferredDependencies(name, child);
        }
        return child;
    }

    /// <summary>Removes the dependency tracked under <paramref name="name"/>, if any (later edges keep their order).</summary>
    /// <param name="name">Edge name.</param>
    /// <returns>True if an edge was removed.</returns>
    protected internal bool RemoveDependency(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!_dependencyIndex.TryGetValue(name, out var index)) return false;
        _dependencies.RemoveAt(index);
        _dependencyIndex.Clear();
        for (var i = 0; i < _dependencies.Count; i++) _dependencyIndex[_dependencies[i].Name] = i;
        return true;
    }

    private void AppendDependency(string name, Trackable child)
    {
        _dependencyIndex[name] = _dependencies.Count;
        _dependencies.Add(new TrackableReference(name, child));
    }

    /// <summary>
    /// Creates a <see cref="Variable"/> and tracks it as dependency <paramref name="name"/> (TF's
    /// <c>_add_variable_with_custom_getter</c>). If a restore is pending for that name and the checkpointed object is
    /// a simple variable (one <c>VARIABLE_VALUE</c> attribute, no children), the variable's initial value is read from
    /// the checkpoint instead of running <paramref name="initializer"/> (restore-on-create, no double initialization).
    /// </summary>
    /// <param name="name">Edge name (for example <c>kernel</c>).</param>
    /// <param name="accelerator">Accelerator that will hold the value; not disposed here.</param>
    /// <param name="dtype">Element type; must be fixed-size.</param>
    /// <param name="shape">Shape, outermost dimension first.</param>
    /// <param name="initializer">Initial value when nothing is restored; <see langword="null"/> means zeros.</param>
    /// <param name="fullName">TF variable name saved as <c>full_name</c> and used for name-based (TF1) restores; defaults to <paramref name="name"/>.</param>
    /// <param name="overwrite">Replace an existing dependency with the same name.</param>
    /// <returns>The new variable, owned by the caller (dispose it, or dispose its owner).</returns>
    /// <exception cref="ArgumentException">Invalid name, dtype or duplicate dependency.</exception>
    /// <exception cref="CheckpointMismatchException">The pending checkpoint value has another dtype or shape.</exception>
    /// <exception cref="CheckpointFormatException">The pending checkpoint value, or one restored with it (its optimizer slots), is
    /// corrupt; the variable is then neither tracked nor allocated, and slots created for it are unregistered and disposed.</exception>
    protected internal Variable AddVariable(string name, Accelerator accelerator, DType dtype, TensorShape shape,
        VariableInitializer? initializer = null, string? fullName = null, bool overwrite = false)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(accelerator);
        var position = PreloadSimpleRestoration(name);
        var variable = Variable.CreateCore(accelerator, fullName ?? name, dtype, shape, initializer, position,
            position is { } p ? p.ObjectPath : null);
        try
        {
            return TrackDependency(name, variable, overwrite);
        }
        catch
        {
            // Tracking restores the new variable's descendants (its optimizer slots): if that fails (a corrupt slot value),
            // the variable is not left tracked either — a disposed dependency would fail every later save.
            if (ReferenceEquals(LookupDependency(name), variable)) RemoveDependency(name);
            variable.Dispose();
            throw;
        }
    }

    // ------------------------------------------------------------------ deferred restoration (spec §7.3)

    /// <summary>Parks a checkpoint position under <paramref name="name"/> until a child with that name is tracked.</summary>
    internal void AddDeferredDependency(string name, CheckpointPosition position)
    {
        _deferred ??= new Dictionary<string, List<CheckpointPosition>>(StringComparer.Ordinal);
        if (!_deferred.TryGetValue(name, out var list)) _deferred[name] = list = [];
        list.Add(position);
    }

    /// <summary>Deferred positions by edge name (read-only view for diagnostics and tests).</summary>
    internal IReadOnlyDictionary<string, List<CheckpointPosition>> DeferredDependencies =>
        _deferred ?? (IReadOnlyDictionary<string, List<CheckpointPosition>>)new Dictionary<string, List<CheckpointPosition>>();

    /// <summary>TF's <c>_preload_simple_restoration</c>: the newest pending position for <paramref name="name"/> if every pending one is a simple variable.</summary>
    internal CheckpointPosition? PreloadSimpleRestoration(string name)
    {
        if (_deferred is null || !_deferred.TryGetValue(name, out var list) || list.Count == 0) return null;
        CheckpointPosition? best = null;
        foreach (var position in list)
        {
            if (!position.IsSimpleVariable) return null;
            if (best is null || position.RestoreUid > best.Value.RestoreUid) best = position;
        }
        return best;
    }

    /// <summary>TF's <c>_handle_deferred_dependencies</c>: restores pending positions for a newly tracked child, newest first, then propagates name-based restores.</summary>
    internal void HandleDeferredDependencies(string name, Trackable child)
    {
        if (_deferred is not null && _deferred.Remove(name, out var list))
        {
            list.Sort((a, b) => b.RestoreUid.CompareTo(a.RestoreUid));
            foreach (var position in list) position.Restore(child);
        }
        if (_nameBasedRestores is not null)
        {
            foreach (var restore in _nameBasedRestores.OrderByDescending(r => r.RestoreUid))
                child.NameBasedAttributeRestore(restore);
        }
    }

    /// <summary>TF's <c>_name_based_attribute_restore</c>: registers a name-based restore and applies it to this object's attributes.</summary>
    internal void NameBasedAttributeRestore(NameBasedRestoreCoordinator restore)
    {
        _nameBasedRestores ??= [];
        if (!_nameBasedRestores.Contains(restore)) _nameBasedRestores.Add(restore);
        if (UpdateUid < restore.RestoreUid)
        {
            restore.EagerRestore(this);
            UpdateUid = restore.RestoreUid;
        }
    }
}

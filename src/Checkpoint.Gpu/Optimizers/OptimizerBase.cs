using CheckpointGpu.Format;

namespace CheckpointGpu;

/// <summary>
/// Base class for optimizers that keep per-variable state in <b>slot variables</b> (Keras 2 legacy
/// <c>OptimizerV2</c>: Adam's <c>m</c>/<c>v</c>, SGD's <c>momentum</c>). Slots are not dependencies: they are saved
/// under <c>&lt;variable path&gt;/.OPTIMIZER_SLOT/&lt;optimizer path&gt;/&lt;slot&gt;</c> and referenced from the optimizer's
/// node through <c>slot_variables</c> (spec §6.3, §6.4). Keras 3 optimizers have no slots; model them as an
/// <see cref="AutoTrackable"/> with <see cref="TrackableList{T}"/>s instead.
/// </summary>
/// <remarks>
/// <para><b>Lazy creation and restore.</b> Subclasses call <see cref="AddSlot"/> when they first need a slot (typically
/// at the first update step). If a restore reached the variable and this optimizer before that, the checkpointed
/// slot value is parked here, keyed by (slot name, variable), and becomes the slot's initial value when it is
/// created (spec §7.4). With <see cref="CreateSlotsOnRestore"/> (the default, as in Keras eager mode) a slot whose
/// checkpoint entry is a simple variable is instead created during the restore itself.</para>
/// <para>Ownership: the optimizer owns its slot variables and disposes them in <see cref="Dispose()"/>.
/// Thread-safety: not thread-safe.</para>
/// </remarks>
public abstract class OptimizerBase : AutoTrackable, IDisposable
{
    private readonly List<string> _slotNames = [];
    private readonly Dictionary<Variable, Dictionary<string, Variable>> _slots = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<string, Dictionary<Variable, List<CheckpointPosition>>> _deferredSlotRestorations = new(StringComparer.Ordinal);
    private bool _disposed;

    /// <summary>Creates an optimizer.</summary>
    /// <param name="name">Name prefix of slot variables' <c>full_name</c> (Keras: <c>Adam</c>, <c>SGD</c>).</param>
    protected OptimizerBase(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        Name = name;
    }

    /// <summary>The optimizer's name (slot <c>full_name</c> prefix, e.g. <c>Adam/dense/kernel/m</c>).</summary>
    public string Name { get; }

    /// <summary>
    /// Slot names in the order they were first created (TF's <c>get_slot_names</c>); this order fixes the node ids of
    /// slot variables in a saved graph.
    /// </summary>
    public IReadOnlyList<string> SlotNames => _slotNames;

    /// <summary>
    /// When true (default, like Keras 2 in eager mode), a restore that reaches both a variable and this optimizer
    /// creates the variable's missing slots right away from simple checkpoint values; when false, slot values wait
    /// until <see cref="AddSlot"/> creates the slot. A slot created by a restore that then fails (a corrupt value fails
    /// the whole restore with <see cref="CheckpointFormatException"/>) is unregistered and disposed: afterwards this
    /// optimizer has exactly the slots it had before the call.
    /// </summary>
    protected virtual bool CreateSlotsOnRestore => true;

    /// <summary>Returns the slot <paramref name="slotName"/> of <paramref name="variable"/>, or <see langword="null"/>.</summary>
    /// <param name="variable">The optimized variable.</param>
    /// <param name="slotName">Slot name (for example <c>m</c>).</param>
    /// <returns>The slot variable or <see langword="null"/>.</returns>
    public Variable? GetSlot(Variable variable, string slotName)
    {
        ArgumentNullException.ThrowIfNull(variable);
        ArgumentNullException.ThrowIfNull(slotName);
        return _slots.TryGetValue(variable, out var dict) && dict.TryGetValue(slotName, out var slot) ? slot : null;
    }

    /// <summary>Every slot of <paramref name="variable"/> by name (empty when none).</summary>
    /// <param name="variable">The optimized variable.</param>
    /// <returns>Slots by slot name.</returns>
    public IReadOnlyDictionary<string, Variable> GetSlots(Variable variable)
    {
        ArgumentNullException.ThrowIfNull(variable);
        return _slots.TryGetValue(variable, out var dict) ? dict : new Dictionary<string, Variable>();
    }

    /// <summary>
    /// Returns the existing slot, or creates it (TF's <c>add_slot</c>) on <paramref name="variable"/>'s accelerator
    /// with the variable's dtype. A checkpoint value parked for (slot, variable) becomes the initial value instead of
    /// <paramref name="initializer"/>.
    /// </summary>
    /// <param name="variable">The optimized variable.</param>
    /// <param name="slotName">Slot name.</param>
    /// <param name="initializer">Initial value when nothing is restored; <see langword="null"/> means zeros.</param>
    /// <param name="shape">Slot shape; defaults to the variable's.</param>
    /// <param name="fullName">TF name; defaults to <c>&lt;Name&gt;/&lt;variable.Name&gt;/&lt;slotName&gt;</c>.</param>
    /// <returns>The slot variable (owned by this optimizer).</returns>
    /// <exception cref="CheckpointMismatchException">A parked checkpoint value has another dtype or shape.</exception>
    /// <exception cref="ObjectDisposedException">The optimizer is disposed.</exception>
    protected Variable AddSlot(Variable variable, string slotName, VariableInitializer? initializer = null,
        TensorShape? shape = null, string? fullName = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(variable);
        ArgumentException.ThrowIfNullOrEmpty(slotName);
        if (GetSlot(variable, slotName) is { } existing) return existing;

        List<CheckpointPosition>? deferred = null;
        if (_deferredSlotRestorations.TryGetValue(slotName, out var byVariable))
            byVariable.Remove(variable, out deferred);
        CheckpointPosition? initialFrom = null;
        if (deferred is { Count: > 0 } && deferred.All(p => p.IsSimpleVariable))
            initialFrom = deferred.MaxBy(p => p.RestoreUid);
        var slot = Variable.CreateCore(variable.Accelerator, fullName ?? GetSlotFullName(variable, slotName, StoredFullName(initialFrom)), variable.DType,
            shape ?? variable.Shape, initializer, initialFrom, initialFrom?.ObjectPath);
        RegisterSlot(variable, slotName, slot);
        if (deferred is not null)
        {
            // Highest restore first: older restores are then skipped by the update-uid rule (spec §7.7).
            deferred.Sort((a, b) => b.RestoreUid.CompareTo(a.RestoreUid));
            foreach (var position in deferred) position.Restore(slot);
        }
        return slot;
    }

    /// <summary>
    /// The <c>full_name</c> of a new slot variable. The default is Keras 2's <c>&lt;Name&gt;/&lt;variable.Name&gt;/&lt;slot&gt;</c>
    /// (e.g. <c>Adam/dense/kernel/m</c>); generic trees that mirror a checkpoint can return
    /// <paramref name="checkpointFullName"/> to reproduce the file exactly.
    /// </summary>
    /// <param name="variable">The optimized variable.</param>
    /// <param name="slotName">Slot name.</param>
    /// <param name="checkpointFullName">The stored slot's <c>full_name</c> (possibly empty: some TF releases wrote none) when the slot takes its value from a checkpoint; otherwise <see langword="null"/>.</param>
    /// <returns>The name.</returns>
    protected virtual string GetSlotFullName(Variable variable, string slotName, string? checkpointFullName)
    {
        ArgumentNullException.ThrowIfNull(variable);
        return $"{Name}/{variable.Name}/{slotName}";
    }

    private static string? StoredFullName(CheckpointPosition? position) =>
        position is { } p && p.ObjectProto.Attributes.Count > 0 ? p.ObjectProto.Attributes[0].FullName : null;

    private void RegisterSlot(Variable variable, string slotName, Variable slot)
    {
        if (!_slots.TryGetValue(variable, out var dict)) _slots[variable] = dict = new Dictionary<string, Variable>(StringComparer.Ordinal);
        dict[slotName] = slot;
        if (!_slotNames.Contains(slotName)) _slotNames.Add(slotName);
    }

    /// <summary>Undoes <see cref="RegisterSlot"/> for <paramref name="slot"/> (a slot a failed restore created); the caller disposes it.</summary>
    private void UnregisterSlot(Variable variable, string slotName, Variable slot)
    {
        if (!_slots.TryGetValue(variable, out var dict) || !dict.TryGetValue(slotName, out var current) || !ReferenceEquals(current, slot)) return;
        dict.Remove(slotName);
        if (dict.Count == 0) _slots.Remove(variable);
        // A slot name first created by this slot leaves SlotNames too (that order fixes the node ids of a later save).
        if (!_slots.Values.Any(d => d.ContainsKey(slotName))) _slotNames.Remove(slotName);
    }

    /// <summary>
    /// TF's <c>_create_or_restore_slot_variable</c> (Keras <c>optimizer_v2.py</c>): restores into an existing slot,
    /// creates it from a simple checkpoint value, or parks the position until the slot is created.
    /// </summary>
    internal Variable? CreateOrRestoreSlotVariable(CheckpointPosition slotPosition, Variable variable, string slotName)
    {
        var slot = GetSlot(variable, slotName);
        if (slot is null && CreateSlotsOnRestore && slotPosition.IsSimpleVariable && !_disposed)
        {
            var info = slotPosition.GetSimpleValueInfo();
            // A slot is a fixed-size tensor: a (corrupt) checkpoint whose slot value is a string or variant stays
            // pending instead of failing here; AssertConsumed reports it as an unresolved slot.
            if (Format.DTypes.IsFixedSize(info.DType))
            {
                slot = Variable.CreateCore(variable.Accelerator, GetSlotFullName(variable, slotName, StoredFullName(slotPosition)),
                    info.DType, info.Shape, null, slotPosition, slotPosition.ObjectPath);
                RegisterSlot(variable, slotName, slot);
                // Its value may still be queued in the restore's batch: if the walk or the batch fails (a corrupt value), the
                // restore unregisters and disposes it, leaving this optimizer as it was (the next step creates fresh slots).
                var created = slot;
                slotPosition.Checkpoint.RecordCreated(created, slotPosition.ProtoId, () => UnregisterSlot(variable, slotName, created));
            }
        }
        if (slot is not null)
        {
            slotPosition.Restore(slot);
            return slot;
        }
        if (!_deferredSlotRestorations.TryGetValue(slotName, out var byVariable))
            _deferredSlotRestorations[slotName] = byVariable = new Dictionary<Variable, List<CheckpointPosition>>(ReferenceEqualityComparer.Instance);
        if (!byVariable.TryGetValue(variable, out var list)) byVariable[variable] = list = [];
        list.Add(slotPosition);
        return null;
    }

    /// <summary>Disposes the slot variables.</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Disposes the slot variables; subclasses also dispose the variables they own.</summary>
    /// <param name="disposing">True when called from <see cref="Dispose()"/>.</param>
    protected virtual void Dispose(bool disposing)
    {
        if (_disposed) return;
        _disposed = true;
        if (!disposing) return;
        foreach (var dict in _slots.Values)
            foreach (var slot in dict.Values) slot.Dispose();
        _slots.Clear();
    }
}

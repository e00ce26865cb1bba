using CheckpointGpu.Format;
using CheckpointGpu.IO;

namespace CheckpointGpu;

/// <summary>
/// One named value a <see cref="Trackable"/> saves (an entry of TF's <c>_serialize_to_tensors</c> dictionary):
/// stored under <c>&lt;object path&gt;/.ATTRIBUTES/&lt;escaped name&gt;</c> and listed in the object graph as a
/// <c>SerializedTensor</c> with <see cref="Name"/> and <see cref="FullName"/>.
/// </summary>
/// <remarks>
/// Variables provide theirs automatically (<c>VARIABLE_VALUE</c>); other objects use
/// <see cref="HostTensorValue"/> or derive from <see cref="TrackableState"/>. Thread-safety: not thread-safe.
/// </remarks>
public abstract class SaveableValue
{
    private protected SaveableValue(string name, string? fullName, bool optionalRestore = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        Name = name;
        FullName = fullName ?? "";
        OptionalRestore = optionalRestore;
    }

    /// <summary>Attribute name (for example <c>VARIABLE_VALUE</c>, <c>py_state</c>); matched by name on restore.</summary>
    public string Name { get; }

    /// <summary>TF1-style name saved as <c>full_name</c> and used by name-based restores; empty for non-variables.</summary>
    public string FullName { get; }

    /// <summary>
    /// Written as the <c>SerializedTensor.optional_restore</c> flag: a checkpointed value with this flag that the
    /// restoring object does not have is not reported as unused (TF 2.0-alpha Keras wrote it for <c>OBJECT_CONFIG_JSON</c>).
    /// </summary>
    public bool OptionalRestore { get; }

    /// <summary>Approximate payload size in bytes (for sharding policies).</summary>
    internal abstract long EstimatedSizeInBytes { get; }

    /// <summary>True for values stored as several suffixed tensors (<see cref="HostTensorGroupValue"/>).</summary>
    internal virtual bool IsGroup => false;

    /// <summary>Writes the current value.</summary>
    internal abstract void Save(ITensorWriter writer, string key, int shardId);

    /// <summary>Reads and applies a stored value, validating dtype and shape first.</summary>
    /// <exception cref="CheckpointMismatchException">The stored dtype or shape does not fit.</exception>
    internal abstract void Restore(ITensorReader reader, string key, StoredTensorInfo info, string objectPath);
}

/// <summary>A <see cref="SaveableValue"/> backed by a variable's device buffer.</summary>
internal sealed class VariableSaveable(Variable variable) : SaveableValue(CheckpointKeys.VariableValue, variable.Name)
{
    public Variable Variable { get; } = variable;

    internal override long EstimatedSizeInBytes => Variable.LengthInBytes;

    internal override void Save(ITensorWriter writer, string key, int shardId) => writer.AddVariable(key, Variable, shardId);

    internal override void Restore(ITensorReader reader, string key, StoredTensorInfo info, string objectPath)
    {
        Variable.CheckCompatible(info.DType, info.Shape, reader.Prefix, objectPath, key);
        reader.ReadIntoVariable(key, Variable);
    }
}

/// <summary>
/// A <see cref="SaveableValue"/> whose value is produced and consumed in host memory by delegates: the way to
/// checkpoint state that is not a variable (TF's <c>PythonState</c> / <c>py_state</c>, <c>tf.data</c> iterator state).
/// </summary>
/// <remarks>Thread-safety: the delegates are called on the saving/restoring thread.</remarks>
public sealed class HostTensorValue : SaveableValue
{
    private readonly Func<HostTensor> _save;
    private readonly Action<HostTensor> _restore;

    /// <summary>Creates an attribute.</summary>
    /// <param name="name">Attribute name (unique within the object).</param>
    /// <param name="save">Returns the current value; called once per save.</param>
    /// <param name="restore">Receives a restored value.</param>
    /// <param name="expectedDType">When set, a stored tensor of another dtype is a <see cref="CheckpointMismatchException"/>; <see langword="null"/> accepts any.</param>
    /// <param name="expectedShape">When set, a stored tensor of another shape is rejected; <see langword="null"/> accepts any.</param>
    /// <param name="fullName">Optional <c>full_name</c> (TF1 name for name-based restores); default empty.</param>
    /// <param name="optionalRestore">Value of the <c>optional_restore</c> flag written to the object graph.</param>
    /// <exception cref="ArgumentNullException">A delegate or <paramref name="name"/> is null.</exception>
    public HostTensorValue(string name, Func<HostTensor> save, Action<HostTensor> restore,
        DType? expectedDType = null, TensorShape? expectedShape = null, string? fullName = null, bool optionalRestore = false)
        : base(name, fullName, optionalRestore)
    {
        ArgumentNullException.ThrowIfNull(save);
        ArgumentNullException.ThrowIfNull(restore);
        _save = save;
        _restore = restore;
        ExpectedDType = expectedDType;
        ExpectedShape = expectedShape;
    }

    /// <summary>Required stored dtype, or <see langword="null"/> for any.</summary>
    public DType? ExpectedDType { get; }

    /// <summary>Required stored shape, or <see langword="null"/> for any.</summary>
    public TensorShape? ExpectedShape { get; }

    internal override long EstimatedSizeInBytes => 0;

    internal override void Save(ITensorWriter writer, string key, int shardId) => writer.AddHost(key, _save(), shardId);

    internal override void Restore(ITensorReader reader, string key, StoredTensorInfo info, string objectPath)
    {
        if (ExpectedDType is { } dt && dt != info.DType)
            throw new CheckpointMismatchException("Stored dtype does not match the attribute.", reader.Prefix, objectPath, key,
                DTypes.GetName(dt), DTypes.GetName(info.DType));
        if (ExpectedShape is { } shape && shape != info.Shape)
            throw new CheckpointMismatchException("Stored shape does not match the attribute.", reader.Prefix, objectPath, key,
                shape.ToString(), info.Shape.ToString());
        _restore(reader.ReadHost(key));
    }
}

/// <summary>
/// A <see cref="SaveableValue"/> made of several host tensors stored under the attribute's key plus a suffix each
/// (TF's multi-spec <c>SaveableObject</c>: a lookup table's attribute <c>table</c> is stored as
/// <c>…/.ATTRIBUTES/table-keys</c> and <c>…/.ATTRIBUTES/table-values</c>, while the object graph names only
/// <c>…/.ATTRIBUTES/table</c>).
/// </summary>
/// <remarks>Thread-safety: the delegates are called on the saving/restoring thread.</remarks>
public sealed class HostTensorGroupValue : SaveableValue
{
    private readonly Func<IReadOnlyList<KeyValuePair<string, HostTensor>>> _save;
    private readonly Action<IReadOnlyDictionary<string, HostTensor>> _restore;

    /// <summary>Creates a grouped attribute.</summary>
    /// <param name="name">Attribute name (for example <c>table</c>).</param>
    /// <param name="save">Returns (suffix, tensor) pairs in data-file order, e.g. (<c>-keys</c>, …), (<c>-values</c>, …).</param>
    /// <param name="restore">Receives every stored tensor whose key is the attribute key plus a suffix without <c>/</c>, by suffix.</param>
    /// <param name="fullName">Optional <c>full_name</c>.</param>
    /// <param name="optionalRestore">Value of the <c>optional_restore</c> flag.</param>
    /// <exception cref="ArgumentNullException">A delegate is null.</exception>
    public HostTensorGroupValue(string name, Func<IReadOnlyList<KeyValuePair<string, HostTensor>>> save,
        Action<IReadOnlyDictionary<string, HostTensor>> restore, string? fullName = null, bool optionalRestore = false)
        : base(name, fullName, optionalRestore)
    {
        ArgumentNullException.ThrowIfNull(save);
        ArgumentNullException.ThrowIfNull(restore);
        _save = save;
        _restore = restore;
    }

    internal override long EstimatedSizeInBytes => 0;

    internal override bool IsGroup => true;

    internal override void Save(ITensorWriter writer, string key, int shardId)
    {
        foreach (var (suffix, tensor) in _save())
        {
            if (string.IsNullOrEmpty(suffix) || suffix.Contains('/', StringComparison.Ordinal))
                throw new InvalidOperationException($"Attribute '{Name}': suffix '{suffix}' must be non-empty and contain no '/'.");
            writer.AddHost(key + suffix, tensor, shardId);
        }
    }

    internal override void Restore(ITensorReader reader, string key, StoredTensorInfo info, string objectPath) =>
        throw new InvalidOperationException("Grouped values are restored through RestoreGroup.");

    internal void RestoreGroup(ITensorReader reader, IReadOnlyList<string> keys, string attributeKey)
    {
        var values = new Dictionary<string, HostTensor>(StringComparer.Ordinal);
        foreach (var k in keys) values[k[attributeKey.Length..]] = reader.ReadHost(k);
        _restore(values);
    }
}

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
    private protected SaveableValue(string name, string? fullName)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        Name = name;
        FullName = fullName ?? "";
    }

    /// <summary>Attribute name (for example <c>VARIABLE_VALUE</c>, <c>py_state</c>); matched by name on restore.</summary>
    public string Name { get; }

    /// <summary>TF1-style name saved as <c>full_name</c> and used by name-based restores; empty for non-variables.</summary>
    public string FullName { get; }

    /// <summary>Approximate payload size in bytes (for sharding policies).</summary>
    internal abstract long EstimatedSizeInBytes { get; }

    /// <summary>Writes the current value.</summary>
    internal abstract void Save(ITensorWriter writer, string key, int shardId);

    /// <summary>Reads and applies a stored value, validating dtype and shape first.</summary>
    /// <exception cref="CheckpointMismatchException">The stored dtype or shape does not fit.</exception>
    internal abstract void Restore(ITensorReader reader, string key, StoredTensorInfo info, string objectPath);
}

/// <summary>A <see cref="SaveableValue"/> backed by a variable's device buffer.</summary>
internal sealed class VariableSaveable(Variable variable) : SaveableValue(CheckpointNames.VariableValue, variable.Name)
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
    /// <exception cref="ArgumentNullException">A delegate or <paramref name="name"/> is null.</exception>
    public HostTensorValue(string name, Func<HostTensor> save, Action<HostTensor> restore,
        DType? expectedDType = null, TensorShape? expectedShape = null, string? fullName = null)
        : base(name, fullName)
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

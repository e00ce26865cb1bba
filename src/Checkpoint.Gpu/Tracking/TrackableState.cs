using CheckpointGpu.Format;

namespace CheckpointGpu;

/// <summary>
/// Base class for checkpointing state that is not a variable, saved as one host tensor (TF's <c>PythonState</c>,
/// <c>tensorflow/python/trackable/python_state.py</c>, which stores a string under the attribute <c>py_state</c>):
/// for example a data-iterator position or a random-number generator's state.
/// </summary>
/// <remarks>Thread-safety: not thread-safe.</remarks>
public abstract class TrackableState : Trackable
{
    /// <summary>TF's attribute name for Python state (<c>PYTHON_STATE</c>).</summary>
    public const string PythonStateAttributeName = "py_state";

    private IReadOnlyList<SaveableValue>? _attributes;

    /// <summary>Creates the state object.</summary>
    protected TrackableState() { }

    /// <summary>The attribute name; <c>py_state</c> unless overridden.</summary>
    protected virtual string AttributeName => PythonStateAttributeName;

    /// <summary>Dtype a restored value must have, or <see langword="null"/> for any (default: <see cref="DType.String"/> like TF's <c>PythonState</c>).</summary>
    protected virtual DType? ExpectedDType => DType.String;

    /// <summary>Captures the current state (called on every save).</summary>
    /// <returns>The value to store.</returns>
    public abstract HostTensor Serialize();

    /// <summary>Applies a restored state.</summary>
    /// <param name="value">The stored value (dtype already checked against <see cref="ExpectedDType"/>).</param>
    public abstract void Deserialize(HostTensor value);

    /// <inheritdoc/>
    protected internal override IReadOnlyList<SaveableValue> GetSaveableValues() =>
        _attributes ??= [new HostTensorValue(AttributeName, Serialize, Deserialize, ExpectedDType)];
}

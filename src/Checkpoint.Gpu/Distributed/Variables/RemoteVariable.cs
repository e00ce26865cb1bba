using CheckpointGpu.Format;
using CheckpointGpu.IO;

namespace CheckpointGpu.Distributed.Variables;

/// <summary>
/// Stands in, in this worker's object tree, for a variable whose buffer lives on another worker (model parallelism):
/// it produces the same object-graph node as the real <see cref="Variable"/> (one <c>VARIABLE_VALUE</c> attribute with
/// the same <c>full_name</c>), so every worker's graph is identical, but it holds no memory, is never written here,
/// and a restore reads nothing for it.
/// </summary>
/// <remarks>Immutable; thread-safe.</remarks>
public sealed class RemoteVariable : Trackable
{
    private IReadOnlyList<SaveableValue>? _attributes;

    /// <summary>Creates the placeholder.</summary>
    /// <param name="name">TF variable name of the real variable (its <c>full_name</c>).</param>
    /// <param name="dtype">Its element type.</param>
    /// <param name="shape">Its shape.</param>
    /// <param name="ownerRank">Rank of the worker holding (and writing) the real variable.</param>
    /// <exception cref="ArgumentException">Empty name.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="ownerRank"/> is negative.</exception>
    public RemoteVariable(string name, DType dtype, TensorShape shape, int ownerRank)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentOutOfRangeException.ThrowIfNegative(ownerRank);
        Name = name;
        DType = dtype;
        Shape = shape;
        OwnerRank = ownerRank;
    }

    /// <summary>TF variable name.</summary>
    public string Name { get; }

    /// <summary>Element type.</summary>
    public DType DType { get; }

    /// <summary>Shape.</summary>
    public TensorShape Shape { get; }

    /// <summary>The worker that holds and writes the real variable.</summary>
    public int OwnerRank { get; }

    /// <inheritdoc/>
    protected internal override IReadOnlyList<SaveableValue> GetSaveableValues() => _attributes ??= [new RemoteSaveable(this)];

    /// <summary>The placeholder's attribute: written by its owner only, restored by nobody here.</summary>
    internal sealed class RemoteSaveable(RemoteVariable owner) : SaveableValue(CheckpointKeys.VariableValue, owner.Name)
    {
        internal override long EstimatedSizeInBytes =>
            owner.Shape.TryGetElementCount(out var n) && DTypes.IsFixedSize(owner.DType) ? n * DTypes.GetElementSize(owner.DType) : 0;

        internal override void Save(ITensorWriter writer, string key, int shardId) =>
            throw new InvalidOperationException($"'{key}' is held by worker {owner.OwnerRank}; a RemoteVariable cannot be written here (single-process save of a multi-worker tree, or an ownership policy that assigned it locally).");

        internal override void Restore(ITensorReader reader, string key, StoredTensorInfo info, string objectPath)
        {
            // Nothing to read: the owner restores it. Still check the checkpoint agrees with the declared dtype/shape.
            if (info.DType != owner.DType || info.Shape != owner.Shape)
                throw new CheckpointMismatchException($"Dtype or shape mismatch for remote variable '{owner.Name}'.", reader.Prefix, objectPath, key,
                    $"{DTypes.GetName(owner.DType)} {owner.Shape}", $"{DTypes.GetName(info.DType)} {info.Shape}");
        }
    }
}

namespace CheckpointGpu.Format;

/// <summary>
/// Contents of the <c>checkpoint</c> state file (<c>tensorflow.CheckpointState</c>; spec section 1.4).
/// Paths are stored as written (relative to the state file's directory in files written by TF 2.x).
/// </summary>
/// <param name="ModelCheckpointPath">The newest checkpoint prefix (field 1; non-empty).</param>
/// <param name="AllModelCheckpointPaths">Live prefixes, oldest first (field 2).</param>
/// <param name="AllModelCheckpointTimestamps">Seconds since the Unix epoch, parallel to <paramref name="AllModelCheckpointPaths"/> (field 3; may be empty).</param>
/// <param name="LastPreservedTimestamp">Time of the last checkpoint kept by <c>keep_checkpoint_every_n_hours</c> (field 4), or null when absent (written as omitted).</param>
/// <remarks>Immutable; value equality compares the lists element-wise.</remarks>
public sealed record CheckpointState(
    string ModelCheckpointPath,
    IReadOnlyList<string> AllModelCheckpointPaths,
    IReadOnlyList<double> AllModelCheckpointTimestamps,
    double? LastPreservedTimestamp)
{
    /// <summary>Creates the state <c>Checkpoint.save</c> writes: one path, no timestamps.</summary>
    /// <param name="modelCheckpointPath">The checkpoint prefix.</param>
    public CheckpointState(string modelCheckpointPath)
        : this(modelCheckpointPath, [modelCheckpointPath], Array.Empty<double>(), null)
    {
    }

    /// <inheritdoc/>
    public bool Equals(CheckpointState? other) => other is not null
        && string.Equals(ModelCheckpointPath, other.ModelCheckpointPath, StringComparison.Ordinal)
        && AllModelCheckpointPaths.SequenceEqual(other.AllModelCheckpointPaths, StringComparer.Ordinal)
        && AllModelCheckpointTimestamps.SequenceEqual(other.AllModelCheckpointTimestamps)
        && Nullable.Equals(LastPreservedTimestamp, other.LastPreservedTimestamp);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(ModelCheckpointPath, AllModelCheckpointPaths.Count, AllModelCheckpointTimestamps.Count, LastPreservedTimestamp);
}

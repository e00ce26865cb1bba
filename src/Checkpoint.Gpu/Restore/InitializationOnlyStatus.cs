namespace CheckpointGpu;

/// <summary>
/// Status of <c>Restore(null)</c>: nothing is restored, every assertion fails (TF's <c>InitializationOnlyStatus</c>).
/// </summary>
/// <remarks>Thread-safety: immutable apart from nothing; thread-safe.</remarks>
public sealed class InitializationOnlyStatus : LoadStatus
{
    private const string Message = "No checkpoint specified (save path is null); nothing is being restored.";

    internal InitializationOnlyStatus(long restoreUid) { RestoreUid = restoreUid; }

    /// <summary>Uid reserved for this (empty) restore.</summary>
    public long RestoreUid { get; }

    /// <inheritdoc/>
    public override LoadStatus AssertConsumed() => throw new CheckpointMismatchException(Message);

    /// <inheritdoc/>
    public override LoadStatus AssertExistingObjectsMatched() => throw new CheckpointMismatchException(Message);

    /// <inheritdoc/>
    public override LoadStatus AssertNontrivialMatch() => throw new CheckpointMismatchException(Message);

    /// <inheritdoc/>
    public override LoadStatus ExpectPartial() => this;

    /// <summary>Variables are initialized when created, so there is nothing left to initialize; returns this status.</summary>
    /// <returns>This status.</returns>
    public override LoadStatus InitializeOrRestore() => this;
}

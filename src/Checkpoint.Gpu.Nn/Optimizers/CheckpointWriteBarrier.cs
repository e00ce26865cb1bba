namespace CheckpointGpu.Nn;

/// <summary>
/// An <see cref="IVariableWriteBarrier"/> over a <see cref="Checkpoint"/>'s asynchronous saves: before an optimizer updates
/// a variable it waits only if a queued or running save has not yet staged that variable's bytes (per-variable write
/// barriers, issue 5). Install it with <c>optimizer.WriteBarrier = new CheckpointWriteBarrier(checkpoint)</c> and train
/// with <c>ApplyGradientsAsync</c> / <c>MlpTrainer.TrainStepAsync</c>.
/// </summary>
/// <param name="checkpoint">The checkpoint whose saves are guarded; not disposed here.</param>
/// <remarks>Thread-safe as far as <see cref="Checkpoint.WaitUntilStagedAsync"/> is.</remarks>
public sealed class CheckpointWriteBarrier(Checkpoint checkpoint) : IVariableWriteBarrier
{
    private readonly Checkpoint _checkpoint = checkpoint ?? throw new ArgumentNullException(nameof(checkpoint));

    /// <inheritdoc/>
    public ValueTask WaitUntilStagedAsync(Variable variable, CancellationToken cancellationToken) =>
        _checkpoint.WaitUntilStagedAsync(variable, cancellationToken);
}

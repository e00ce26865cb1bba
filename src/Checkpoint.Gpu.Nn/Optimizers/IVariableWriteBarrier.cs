namespace CheckpointGpu.Nn;

/// <summary>
/// Hook between an asynchronous checkpoint save and the training loop: before an optimizer mutates a variable (a model
/// variable, one of its slots/moments, or the iteration counter) it awaits <see cref="WaitUntilStagedAsync"/>, so a
/// save that is still copying that variable's bytes off the device can finish them first (per-variable write barrier,
/// ARCHITECTURE.md "A save, end to end", step 5). The IO pipeline supplies an implementation; the default,
/// <see cref="VariableWriteBarrier.None"/>, never waits.
/// </summary>
/// <remarks>Implementations must be thread-safe; returned tasks are awaited exactly once.</remarks>
public interface IVariableWriteBarrier
{
    /// <summary>Completes when no in-flight save still needs <paramref name="variable"/>'s current bytes.</summary>
    /// <param name="variable">The variable about to be mutated.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>A task completing when the variable may be written.</returns>
    ValueTask WaitUntilStagedAsync(Variable variable, CancellationToken cancellationToken);
}

/// <summary>Built-in <see cref="IVariableWriteBarrier"/>s.</summary>
public static class VariableWriteBarrier
{
    /// <summary>A barrier that never waits (the default of every optimizer).</summary>
    public static IVariableWriteBarrier None { get; } = new NoBarrier();

    private sealed class NoBarrier : IVariableWriteBarrier
    {
        public ValueTask WaitUntilStagedAsync(Variable variable, CancellationToken cancellationToken) =>
            cancellationToken.IsCancellationRequested ? ValueTask.FromCanceled(cancellationToken) : ValueTask.CompletedTask;
    }
}

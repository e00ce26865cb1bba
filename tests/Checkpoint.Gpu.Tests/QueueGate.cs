namespace CheckpointGpu.Tests;

/// <summary>
/// Test-only gate for <see cref="TrackableSaver.QueueObserver"/>: holds every asynchronous save at its queuing step until
/// <see cref="Open"/>, which makes "a call is still pending" deterministic.
/// </summary>
internal sealed class QueueGate
{
    private readonly TaskCompletionSource _open = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The observer: completes when the gate is opened (or the save's token is cancelled).</summary>
    public ValueTask WaitAsync(CancellationToken cancellationToken) => new(_open.Task.WaitAsync(cancellationToken));

    /// <summary>Lets every held and later call through.</summary>
    public void Open() => _open.TrySetResult();
}

namespace CheckpointGpu;

/// <summary>
/// The result of <c>Restore</c>/<c>Read</c>: what matched, with assertions to check it (TF's <c>_LoadStatus</c>,
/// <c>tensorflow/python/checkpoint/checkpoint.py</c>; spec §7.5). Every assertion returns the status for chaining
/// and throws <see cref="CheckpointMismatchException"/> when it fails.
/// </summary>
/// <remarks>
/// Values for existing objects are in their device buffers when <c>Restore</c>/<c>RestoreAsync</c> returns. Deferred
/// values land when their objects are created: from the verified prefetch cache by an asynchronous host-to-device copy
/// on the variable's stream (ordered before any work queued on that stream afterwards), which <see cref="WaitAsync"/>
/// waits for. Disposing a status writes a warning listing checkpoint values that were never matched, unless
/// <see cref="ExpectPartial"/> was called. Thread-safety: not thread-safe.
/// </remarks>
public abstract class LoadStatus : IDisposable
{
    private protected LoadStatus() { }

    /// <summary>
    /// Checks that every checkpointed value was matched: <see cref="AssertExistingObjectsMatched"/>, plus every
    /// checkpoint node with values is bound to a live object, no slot restoration is pending, and no checkpointed
    /// attribute was unknown to its object.
    /// </summary>
    /// <returns>This status.</returns>
    /// <exception cref="CheckpointMismatchException">Something in the checkpoint was not restored.</exception>
    public abstract LoadStatus AssertConsumed();

    /// <summary>
    /// Checks that every live object that owns values (reachable from the root, excluding empty lists/dictionaries)
    /// was bound to a checkpoint node, and that every bound object received this restore's values.
    /// </summary>
    /// <returns>This status.</returns>
    /// <exception cref="CheckpointMismatchException">A live object was not matched.</exception>
    public abstract LoadStatus AssertExistingObjectsMatched();

    /// <summary>Checks that something besides the root was matched.</summary>
    /// <returns>This status.</returns>
    /// <exception cref="CheckpointMismatchException">Nothing but the root matched (or there was nothing to load).</exception>
    public abstract LoadStatus AssertNontrivialMatch();

    /// <summary>Silences the unmatched-values warning written when the status or its checkpoint is disposed.</summary>
    /// <returns>This status.</returns>
    public abstract LoadStatus ExpectPartial();

    /// <summary>
    /// TF's <c>initialize_or_restore</c>. In eager semantics values are restored on match and variables are
    /// initialized at creation, so this only validates the status; it returns this status.
    /// </summary>
    /// <returns>This status.</returns>
    public virtual LoadStatus InitializeOrRestore() => this;

    /// <summary>
    /// Completes when every value matched so far (including restore-on-create of objects created since) is in its device
    /// buffer; faults with the device error of a copy that failed.
    /// </summary>
    /// <param name="cancellationToken">Cancels the wait (not the restore).</param>
    /// <returns>A task completing with this status.</returns>
    public virtual Task<LoadStatus> WaitAsync(CancellationToken cancellationToken = default) =>
        cancellationToken.IsCancellationRequested
            ? Task.FromCanceled<LoadStatus>(cancellationToken)
            : Task.FromResult(this);

    /// <summary>Writes the unmatched-values warning (unless <see cref="ExpectPartial"/>) and releases the checkpoint files.</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases resources.</summary>
    /// <param name="disposing">True from <see cref="Dispose()"/>.</param>
    protected virtual void Dispose(bool disposing) { }
}

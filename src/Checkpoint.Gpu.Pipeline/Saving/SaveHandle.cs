using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline.Saving;

namespace CheckpointGpu.Pipeline;

/// <summary>
/// A save in progress (returned by <see cref="CheckpointPipeline.QueueSave(string, SavePlan, Func{string, CancellationToken, ValueTask}?, CancellationToken)"/>): <see cref="Snapshotted"/> says the
/// device buffers are no longer read, <see cref="Completion"/> says the checkpoint is durable and committed.
/// </summary>
/// <remarks>
/// <para>Both tasks may be awaited by many parties. On failure both fault with the first failure; later failures
/// follow it in <see cref="Task.Exception"/>. A faulted <see cref="Snapshotted"/> also means the device buffers are
/// no longer read (all device copies were drained before it faulted).</para>
/// <para>Thread-safe.</para>
/// </remarks>
public sealed class SaveHandle
{
    private readonly SaveOperation _operation;

    internal SaveHandle(SaveOperation operation) => _operation = operation;

    /// <summary>The prefix whose files this save writes.</summary>
    public string Prefix => _operation.Prefix;

    /// <summary>
    /// The checkpoint this save produces: <see cref="Prefix"/>, except for a part that is merged into another checkpoint
    /// (a multi-worker save writes <c>&lt;checkpoint&gt;_temp/part-0000r-of-0000N</c>; this is <c>&lt;checkpoint&gt;</c>).
    /// </summary>
    public string CheckpointPrefix => _operation.CheckpointPrefix ?? _operation.Prefix;

    /// <summary>The plan being executed.</summary>
    public SavePlan Plan => _operation.Plan;

    /// <summary>Completes when no device buffer of the save will be read again: the caller may mutate every variable.</summary>
    public Task Snapshotted => _operation.Snapshotted;

    /// <summary>
    /// Completes when the checkpoint is committed and durable (data and index flushed, renamed, directory
    /// flushed) and the <c>onCommitted</c> callback (if any) has returned.
    /// </summary>
    public Task Completion => _operation.Completion;

    /// <summary>
    /// The index entries written (with checksums), once <see cref="Completion"/> succeeded; otherwise null. As
    /// <see cref="SavePlan.ToEntries"/> returns them: one per payload in plan order, then one full-tensor entry per partitioned key.
    /// </summary>
    public IReadOnlyList<BundleEntry>? Entries => _operation.Entries;

    /// <summary>Time from the start of execution (not from queueing) until every byte was written, before the commit.</summary>
    public TimeSpan StreamDuration => _operation.SnapshotDuration;

    /// <summary>Time from the start of execution until the commit returned.</summary>
    public TimeSpan TotalDuration => _operation.TotalDuration;

    /// <summary>True when tensor <paramref name="itemIndex"/> has been staged (its device source is no longer read).</summary>
    /// <param name="itemIndex">Index in <see cref="SavePlan.Tensors"/>.</param>
    /// <exception cref="IndexOutOfRangeException"><paramref name="itemIndex"/> is out of range.</exception>
    public bool IsStaged(int itemIndex) => _operation.IsStaged(itemIndex);

    /// <summary>
    /// Per-item write barrier: completes when tensor <paramref name="itemIndex"/> no longer needs its source. Fast
    /// path: already staged → completed synchronously. Under <see cref="SnapshotPolicy.WriteBarriers"/> an unstaged
    /// device source is cloned on the device first (within the copy-on-write budget).
    /// </summary>
    /// <param name="itemIndex">Index in <see cref="SavePlan.Tensors"/>.</param>
    /// <param name="cancellationToken">Cancels the wait (not the save).</param>
    /// <returns>Completes when the source may be mutated. Never faults because the save failed.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="itemIndex"/> is out of range.</exception>
    /// <exception cref="OperationCanceledException">The wait was cancelled.</exception>
    public ValueTask WaitUntilStagedAsync(int itemIndex, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(itemIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(itemIndex, Plan.Tensors.Count);
        return _operation.WaitUntilStagedAsync(itemIndex, cancellationToken);
    }

    /// <summary>Write barrier for every item of this save whose source lies in <paramref name="buffer"/>.</summary>
    /// <param name="buffer">A device buffer (a variable's storage).</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>Completes when <paramref name="buffer"/> may be mutated as far as this save is concerned.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="buffer"/> is null.</exception>
    /// <exception cref="OperationCanceledException">The wait was cancelled.</exception>
    public ValueTask WaitUntilStagedAsync(DeviceBuffer buffer, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        return _operation.WaitUntilStagedAsync(buffer, cancellationToken);
    }
}

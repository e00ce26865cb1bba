using CheckpointGpu.Devices;

namespace CheckpointGpu.Pipeline.Saving;

/// <summary>Write barriers of a save: per-tensor staged signals, copy-on-write clones, release after a failure.</summary>
internal sealed partial class SaveOperation
{
    /// <summary>Completes when the tensor's bytes no longer need to be read from its device source.</summary>
    public ValueTask WaitUntilStagedAsync(int index, CancellationToken cancellationToken)
    {
        if (_staged[index].Task.IsCompleted) return ValueTask.CompletedTask;
        if (cancellationToken.IsCancellationRequested) return ValueTask.FromCanceled(cancellationToken);
        var clone = TryCopyOnWrite(index);
        return new ValueTask((clone ?? _staged[index].Task).WaitAsync(cancellationToken));
    }

    public ValueTask WaitUntilStagedAsync(DeviceBuffer buffer, CancellationToken cancellationToken)
    {
        if (!_byBuffer.TryGetValue(buffer, out var indices)) return ValueTask.CompletedTask;
        List<Task>? pending = null;
        foreach (var i in indices)
        {
            var vt = WaitUntilStagedAsync(i, cancellationToken);
            if (!vt.IsCompletedSuccessfully) (pending ??= []).Add(vt.AsTask());
        }
        return pending is null ? ValueTask.CompletedTask : new ValueTask(Task.WhenAll(pending));
    }

    /// <summary>
    /// Under <see cref="SnapshotPolicy.WriteBarriers"/>, clones an unstaged device source on the device and
    /// redirects the copy engine to the clone; returns the task of the clone copy, or null to wait for staging.
    /// Ordering: the clone is enqueued on the pipeline stream under the same lock the copy engine holds while
    /// enqueuing device→ring copies, so every earlier read of the original precedes it on the (in-order) stream
    /// and every later read uses the clone.
    /// </summary>
    private Task? TryCopyOnWrite(int index)
    {
        if (_options.SnapshotPolicy != SnapshotPolicy.WriteBarriers) return null;
        var source = Plan.Tensors[index].Item.Source;
        if (source.Kind != SaveSourceKind.Device) return null;
        lock (_sync)
        {
            if (_cloneTaken[index] is { } existing) return existing;
            if (_staged[index].Task.IsCompleted || _failures.Count > 0) return null;
            var size = source.LengthInBytes;
            if (!_pipeline.TryReserveCopyOnWrite(size)) return null;
            DeviceBuffer clone;
            var accelerator = source.Device.Buffer!.Accelerator;
            try
            {
                clone = accelerator.Allocate(size);
            }
            catch (AcceleratorException)
            {
                _pipeline.ReleaseCopyOnWrite(size);
                return null;
            }
            var copied = _pipeline.CopyStreamFor(accelerator).EnqueueCopy(source.Device, clone.AsView());
            _clones[index] = clone;
            _redirect[index] = clone.AsView();
            _cloneTaken[index] = copied.Completion;
            return copied.Completion;
        }
    }

    private void MarkStaged(int index)
    {
        if (!_staged[index].TrySetResult()) return;
        DeviceBuffer? clone;
        lock (_sync)
        {
            clone = _clones[index];
            _clones[index] = null;
        }
        if (clone is not null)
        {
            _pipeline.ReleaseCopyOnWrite(clone.LengthInBytes);
            clone.Dispose(); // safe with copies in flight; none remain once staged
        }
        if (Interlocked.Decrement(ref _stagedRemaining) == 0) _snapshotted.TrySetResult();
    }

    /// <summary>After a failure or cancellation, when nothing reads device sources any more: unblock every barrier.</summary>
    private void ReleaseBarriers()
    {
        for (var i = 0; i < _staged.Length; i++)
        {
            if (_staged[i].Task.IsCompleted) continue;
            _staged[i].TrySetResult();
            DeviceBuffer? clone;
            lock (_sync)
            {
                clone = _clones[i];
                _clones[i] = null;
            }
            if (clone is not null)
            {
                _pipeline.ReleaseCopyOnWrite(clone.LengthInBytes);
                clone.Dispose();
            }
        }
    }
}

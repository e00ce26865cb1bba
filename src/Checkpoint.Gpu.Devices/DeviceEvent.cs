namespace CheckpointGpu.Devices;

/// <summary>Completion of one operation enqueued on an <see cref="AcceleratorStream"/> (and, because streams are ordered, of everything enqueued before it on that stream).</summary>
/// <remarks>
/// <para>Await <see cref="Completion"/> or <see cref="WaitAsync"/>. (The event itself is deliberately not awaitable:
/// callers enqueue many operations without awaiting each, and an awaitable return value would trigger CS4014 at
/// every such call.) Any number of awaiters may wait, and
/// none of them blocks a thread: the backend completes the event from its completion path (the CPU stream worker,
/// or an OpenCL event callback), and continuations run asynchronously on the thread pool.</para>
/// <para>A failed operation completes its event with <see cref="Error"/> set and <see cref="Completion"/> faulted;
/// the failure is also reported by the stream's next synchronization.</para>
/// <para>Thread-safe.</para>
/// </remarks>
public sealed class DeviceEvent
{
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly OperationResources? _resources;
    private Exception? _error;
    private int _completed;

    internal DeviceEvent(AcceleratorStream stream, OperationResources? resources)
    {
        Stream = stream;
        _resources = resources;
    }

    /// <summary>The stream the operation was enqueued on.</summary>
    public AcceleratorStream Stream { get; }

    /// <summary>True once the operation finished, successfully or not.</summary>
    public bool IsCompleted => _completion.Task.IsCompleted;

    /// <summary>True once the operation finished without error.</summary>
    public bool IsCompletedSuccessfully => _completion.Task.IsCompletedSuccessfully;

    /// <summary>The failure of the operation, or <see langword="null"/> while pending or after success.</summary>
    public Exception? Error => Volatile.Read(ref _error);

    /// <summary>A task that completes with the operation (faulted with <see cref="Error"/> on failure). May be awaited by many.</summary>
    public Task Completion => _completion.Task;

    /// <summary>Waits for the operation without blocking a thread.</summary>
    /// <param name="cancellationToken">Cancels the wait (not the operation).</param>
    /// <returns>A task completing with the operation.</returns>
    /// <exception cref="OperationCanceledException">The wait was cancelled.</exception>
    public Task WaitAsync(CancellationToken cancellationToken = default) => _completion.Task.WaitAsync(cancellationToken);

    /// <summary>Completes the event exactly once: releases the operation's resources, then publishes the result, then tells the stream.</summary>
    internal void Complete(Exception? error)
    {
        if (Interlocked.Exchange(ref _completed, 1) != 0) return;
        _resources?.Release();
        if (error is null)
        {
            _completion.TrySetResult();
        }
        else
        {
            Volatile.Write(ref _error, error);
            _completion.TrySetException(error);
        }
        Stream.OnOperationCompleted(error);
    }

    /// <summary>Undoes an event whose native enqueue failed (it was never handed to the caller).</summary>
    internal void Abandon()
    {
        if (Interlocked.Exchange(ref _completed, 1) != 0) return;
        _resources?.Release();
        _completion.TrySetCanceled();
        Stream.OnOperationCompleted(null);
    }
}

namespace CheckpointGpu.Format;

/// <summary>
/// Dedicated threads for blocking file-system calls (<c>pwrite</c>, <c>pread</c>, <c>fsync</c>, <c>rename</c>), so that
/// they never occupy .NET thread-pool workers: .NET performs file IO on Unix as blocking calls on pool threads, and on a
/// small machine a few writers in flight starve every other continuation until hill climbing adds threads. With these
/// threads the library needs no change to the process-wide pool (<see cref="ThreadPool.SetMinThreads"/>).
/// </summary>
/// <remarks>
/// <para>Threads are background threads, started on demand up to <see cref="MaxThreadCount"/> and kept for reuse. Work
/// items run in arrival order; completion continuations run asynchronously (never inline on an IO thread).</para>
/// <para>Because the work of a save never needs a thread-pool worker to make progress while it blocks, a synchronous API
/// may wait for an operation with a non-async primitive without deadlocking (see <c>TrackableSaver.Save</c>).</para>
/// <para>Thread-safe.</para>
/// </remarks>
public sealed class BlockingIOThreads
{
    private readonly Queue<Action> _queue = new();
    private readonly object _gate = new();
    private readonly string _name;
    private int _threads;
    private int _idle;

    /// <summary>The process-wide instance used by <see cref="LocalShardStorage"/> and the IO pipeline (16 threads at most).</summary>
    public static BlockingIOThreads Shared { get; } = new(16, "Checkpoint.Gpu IO");

    /// <summary>Creates a group of at most <paramref name="maxThreadCount"/> threads (none started yet).</summary>
    /// <param name="maxThreadCount">Upper bound on threads, ≥ 1.</param>
    /// <param name="name">Thread name, for debuggers.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxThreadCount"/> is less than 1.</exception>
    public BlockingIOThreads(int maxThreadCount, string name)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxThreadCount, 1);
        ArgumentNullException.ThrowIfNull(name);
        MaxThreadCount = maxThreadCount;
        _name = name;
    }

    /// <summary>Upper bound on the number of threads.</summary>
    public int MaxThreadCount { get; }

    /// <summary>Threads started so far.</summary>
    public int ThreadCount
    {
        get
        {
            lock (_gate) return _threads;
        }
    }

    /// <summary>Runs <paramref name="action"/> on an IO thread.</summary>
    /// <param name="action">Blocking work.</param>
    /// <param name="cancellationToken">Cancels the work if it has not started yet (a started system call runs to its end).</param>
    /// <returns>Completes (on a thread-pool thread) with the action's outcome.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="action"/> is null.</exception>
    public Task Run(Action action, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(action);
        return Run<bool>(() =>
        {
            action();
            return true;
        }, cancellationToken);
    }

    /// <summary>Runs <paramref name="function"/> on an IO thread and returns its result.</summary>
    /// <typeparam name="T">The result type.</typeparam>
    /// <param name="function">Blocking work.</param>
    /// <param name="cancellationToken">Cancels the work if it has not started yet.</param>
    /// <returns>The result.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="function"/> is null.</exception>
    public Task<T> Run<T>(Func<T> function, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(function);
        if (cancellationToken.IsCancellationRequested) return Task.FromCanceled<T>(cancellationToken);
        var tcs = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        Enqueue(() =>
        {
            if (cancellationToken.IsCancellationRequested)
            {
                tcs.TrySetCanceled(cancellationToken);
                return;
            }
            try
            {
                tcs.TrySetResult(function());
            }
            catch (OperationCanceledException oce)
            {
                tcs.TrySetCanceled(oce.CancellationToken);
            }
            catch (Exception ex)
            {
                tcs.TrySetException(ex);
            }
        });
        return tcs.Task;
    }

    private void Enqueue(Action work)
    {
        var start = false;
        lock (_gate)
        {
            _queue.Enqueue(work);
            // Start a thread when every existing one is busy (and the bound allows); otherwise wake an idle one.
            if (_queue.Count > _idle && _threads < MaxThreadCount)
            {
                _threads++;
                start = true;
            }
            else
            {
                Monitor.Pulse(_gate);
            }
        }
        if (start) new Thread(Loop) { IsBackground = true, Name = _name }.Start();
    }

    private void Loop()
    {
        while (true)
        {
            Action work;
            lock (_gate)
            {
                _idle++;
                while (_queue.Count == 0) Monitor.Wait(_gate);
                _idle--;
                work = _queue.Dequeue();
            }
            work();
        }
    }
}

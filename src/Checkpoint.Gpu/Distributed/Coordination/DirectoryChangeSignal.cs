namespace CheckpointGpu.Distributed;

/// <summary>
/// Wakes a coordination wait when a file appears, changes, is renamed or deleted in a directory (<see cref="FileSystemWatcher"/>,
/// inotify on Linux), with a timed fallback for file systems that report nothing (NFS, some FUSE mounts) or when the
/// watcher cannot be created (the inotify limit): no sleeping poll loop.
/// </summary>
/// <remarks>Usage: read <see cref="Version"/>, check the files, then <see cref="WaitAsync"/> with that version — a change
/// between the check and the wait is never missed. Thread-safe.</remarks>
internal sealed class DirectoryChangeSignal : IDisposable
{
    private readonly FileSystemWatcher? _watcher;
    private readonly object _gate = new();
    private long _version;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public DirectoryChangeSignal(string directory)
    {
        try
        {
            var watcher = new FileSystemWatcher(directory)
            {
                NotifyFilter = NotifyFilters.FileName | NotifyFilters.LastWrite | NotifyFilters.Size,
                IncludeSubdirectories = false,
            };
            watcher.Created += OnChanged;
            watcher.Changed += OnChanged;
            watcher.Renamed += OnChanged;
            watcher.Deleted += OnChanged;
            watcher.Error += (_, _) => OnChanged(null, EventArgs.Empty);   // overflow: something changed
            watcher.EnableRaisingEvents = true;
            _watcher = watcher;
        }
        catch (Exception ex) when (ex is IOException or ArgumentException or PlatformNotSupportedException or UnauthorizedAccessException)
        {
            _watcher = null;   // the timed fallback alone
        }
    }

    /// <summary>Changes seen so far; read it before checking the files.</summary>
    public long Version
    {
        get
        {
            lock (_gate) return _version;
        }
    }

    /// <summary>
    /// Returns when the directory changed since <paramref name="seen"/> or <paramref name="fallback"/> passed. With
    /// <paramref name="async"/> false the calling thread waits on a monitor (a timed, signalled wait) and the returned task is complete.
    /// </summary>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public async ValueTask WaitAsync(long seen, TimeSpan fallback, bool async, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Task changed;
        lock (_gate)
        {
            if (_version != seen) return;
            if (!async)
            {
                Monitor.Wait(_gate, fallback);
                return;
            }
            changed = _changed.Task;
        }
        using var delayCts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var delay = Task.Delay(fallback, delayCts.Token);
        await Task.WhenAny(changed, delay).ConfigureAwait(false);
        await delayCts.CancelAsync().ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();
    }

    private void OnChanged(object? sender, EventArgs e)
    {
        TaskCompletionSource previous;
        lock (_gate)
        {
            _version++;
            previous = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Monitor.PulseAll(_gate);
        }
        previous.TrySetResult();
    }

    public void Dispose() => _watcher?.Dispose();
}

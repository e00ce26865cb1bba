using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace CheckpointGpu.Distributed;

/// <summary>
/// Starts N local worker processes sharing a coordination directory, for tests and demos: each gets
/// <see cref="WorkerContext.RankVariable"/>, <see cref="WorkerContext.WorldSizeVariable"/>,
/// <see cref="WorkerContext.CoordinationDirectoryVariable"/> and a per-launch <see cref="WorkerContext.JobIdVariable"/>
/// in its environment (read them with <see cref="WorkerContext.FromEnvironment"/>), its output is captured, and
/// workers can be killed (fault tests) or time out.
/// </summary>
/// <remarks>
/// Thread-safety: <see cref="Kill"/>, <see cref="GetOutput"/> and <see cref="WaitForOutputAsync"/> may be called
/// concurrently with <see cref="WaitAllAsync"/>. Disposing kills workers still running.
/// </remarks>
public sealed class LocalWorkerLauncher : IDisposable
{
    private readonly Worker[] _workers;
    private bool _disposed;

    private sealed class Worker(int rank, Process process)
    {
        public int Rank { get; } = rank;
        public Process Process { get; } = process;
        public StringBuilder Output { get; } = new();
        public StringBuilder Error { get; } = new();
        public Lock Gate { get; } = new();
        public Stopwatch Clock { get; } = Stopwatch.StartNew();
        public TaskCompletionSource OutputClosed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource ErrorClosed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public volatile bool Killed;
        public event Action? OutputChanged;
        public void RaiseOutputChanged() => OutputChanged?.Invoke();
    }

    private LocalWorkerLauncher(Worker[] workers, string jobId, string coordinationDirectory)
    {
        _workers = workers;
        JobId = jobId;
        CoordinationDirectory = coordinationDirectory;
    }

    /// <summary>The job id given to every worker of this launch.</summary>
    public string JobId { get; }

    /// <summary>The shared coordination directory.</summary>
    public string CoordinationDirectory { get; }

    /// <summary>Number of workers.</summary>
    public int WorldSize => _workers.Length;

    /// <summary>Starts <paramref name="worldSize"/> processes of <paramref name="executable"/>.</summary>
    /// <param name="executable">Program to run (e.g. <c>dotnet</c>).</param>
    /// <param name="argumentsForRank">Command-line arguments for each rank (e.g. the worker dll and its options).</param>
    /// <param name="worldSize">Number of workers, ≥ 1.</param>
    /// <param name="coordinationDirectory">Shared directory (created if missing).</param>
    /// <param name="environment">Extra environment variables for every worker (e.g. a coordination timeout); may be null.</param>
    /// <param name="workingDirectory">Working directory of the workers; the current one when null.</param>
    /// <returns>The running launcher; dispose it.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="worldSize"/> is less than 1.</exception>
    /// <exception cref="System.ComponentModel.Win32Exception">A process cannot be started (the ones already started are killed).</exception>
    public static LocalWorkerLauncher Start(string executable, Func<int, IReadOnlyList<string>> argumentsForRank, int worldSize, string coordinationDirectory,
        IReadOnlyDictionary<string, string>? environment = null, string? workingDirectory = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(executable);
        ArgumentNullException.ThrowIfNull(argumentsForRank);
        ArgumentOutOfRangeException.ThrowIfLessThan(worldSize, 1);
        ArgumentException.ThrowIfNullOrEmpty(coordinationDirectory);
        Directory.CreateDirectory(coordinationDirectory);
        var jobId = Guid.NewGuid().ToString("N")[..12];
        var workers = new List<Worker>(worldSize);
        try
        {
            for (var rank = 0; rank < worldSize; rank++)
            {
                var info = new ProcessStartInfo(executable)
                {
                    RedirectStandardOutput = true,
                    RedirectStandardError = true,
                    UseShellExecute = false,
                    WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
                };
                foreach (var a in argumentsForRank(rank)) info.ArgumentList.Add(a);
                info.Environment[WorkerContext.RankVariable] = rank.ToString(CultureInfo.InvariantCulture);
                info.Environment[WorkerContext.WorldSizeVariable] = worldSize.ToString(CultureInfo.InvariantCulture);
                info.Environment[WorkerContext.CoordinationDirectoryVariable] = Path.GetFullPath(coordinationDirectory);
                info.Environment[WorkerContext.JobIdVariable] = jobId;
                if (environment is not null) foreach (var (k, v) in environment) info.Environment[k] = v;
                var process = new Process { StartInfo = info, EnableRaisingEvents = true };
                var worker = new Worker(rank, process);
                process.OutputDataReceived += (_, e) => Append(worker, worker.Output, e.Data, worker.OutputClosed);
                process.ErrorDataReceived += (_, e) => Append(worker, worker.Error, e.Data, worker.ErrorClosed);
                process.Start();
                workers.Add(worker);
                process.BeginOutputReadLine();
                process.BeginErrorReadLine();
            }
        }
        catch
        {
            foreach (var w in workers) KillProcess(w);
            throw;
        }
        return new LocalWorkerLauncher(workers.ToArray(), jobId, Path.GetFullPath(coordinationDirectory));
    }

    private static void Append(Worker worker, StringBuilder target, string? line, TaskCompletionSource closed)
    {
        if (line is null)
        {
            closed.TrySetResult();
            return;
        }
        lock (worker.Gate) target.AppendLine(line);
        worker.RaiseOutputChanged();
    }

    /// <summary>Kills worker <paramref name="rank"/> and its children (no-op if it already exited).</summary>
    /// <param name="rank">The worker.</param>
    /// <exception cref="ArgumentOutOfRangeException">No such rank.</exception>
    public void Kill(int rank)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rank);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(rank, _workers.Length);
        KillProcess(_workers[rank]);
    }

    private static void KillProcess(Worker w)
    {
        try
        {
            if (!w.Process.HasExited)
            {
                w.Killed = true;
                w.Process.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException) { }
        catch (System.ComponentModel.Win32Exception) { }
    }

    /// <summary>Standard output captured so far from <paramref name="rank"/>.</summary>
    /// <param name="rank">The worker.</param>
    /// <returns>The text.</returns>
    public string GetOutput(int rank)
    {
        var w = _workers[rank];
        lock (w.Gate) return w.Output.ToString();
    }

    /// <summary>Waits until worker <paramref name="rank"/> has written <paramref name="text"/> to standard output.</summary>
    /// <param name="rank">The worker.</param>
    /// <param name="text">Text to wait for (ordinal).</param>
    /// <param name="timeout">How long to wait.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>True when seen; false on timeout or when the worker exited without writing it.</returns>
    public async Task<bool> WaitForOutputAsync(int rank, string text, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var w = _workers[rank];
        var seen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void Check()
        {
            lock (w.Gate) if (w.Output.ToString().Contains(text, StringComparison.Ordinal)) seen.TrySetResult();
        }
        w.OutputChanged += Check;
        try
        {
            Check();
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            cts.CancelAfter(timeout);
            var done = await Task.WhenAny(seen.Task, w.OutputClosed.Task, Task.Delay(Timeout.Infinite, cts.Token)).ConfigureAwait(false);
            cancellationToken.ThrowIfCancellationRequested();
            Check();
            return seen.Task.IsCompleted;
        }
        finally
        {
            w.OutputChanged -= Check;
        }
    }

    /// <summary>Waits for every worker to exit; workers still running after <paramref name="timeout"/> are killed.</summary>
    /// <param name="timeout">Overall limit.</param>
    /// <param name="cancellationToken">Cancels the wait (workers are then killed).</param>
    /// <returns>One result per rank, in rank order.</returns>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public async Task<IReadOnlyList<WorkerProcessResult>> WaitAllAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        var results = new WorkerProcessResult[_workers.Length];
        for (var i = 0; i < _workers.Length; i++)
        {
            var w = _workers[i];
            try
            {
                await w.Process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                foreach (var other in _workers) KillProcess(other);
                cancellationToken.ThrowIfCancellationRequested();
                await w.Process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            }
            // Let the output readers drain (bounded: the pipes close when the process exits).
            await Task.WhenAny(Task.WhenAll(w.OutputClosed.Task, w.ErrorClosed.Task), Task.Delay(TimeSpan.FromSeconds(5), CancellationToken.None)).ConfigureAwait(false);
            string output, error;
            lock (w.Gate)
            {
                output = w.Output.ToString();
                error = w.Error.ToString();
            }
            results[i] = new WorkerProcessResult(w.Rank, w.Process.ExitCode, output, error, w.Killed, w.Clock.Elapsed);
        }
        return results;
    }

    /// <summary>Kills workers still running and releases the process objects.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var w in _workers)
        {
            KillProcess(w);
            w.Process.Dispose();
        }
    }
}

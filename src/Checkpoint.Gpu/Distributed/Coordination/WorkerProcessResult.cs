namespace CheckpointGpu.Distributed;

/// <summary>How one worker process of a <see cref="LocalWorkerLauncher"/> ended.</summary>
/// <param name="Rank">The worker's rank.</param>
/// <param name="ExitCode">Process exit code (meaningless when <see cref="Killed"/>).</param>
/// <param name="StandardOutput">Everything the process wrote to standard output.</param>
/// <param name="StandardError">Everything the process wrote to standard error.</param>
/// <param name="Killed">True when the launcher killed it (<see cref="LocalWorkerLauncher.Kill"/> or a timeout).</param>
/// <param name="Elapsed">Wall time from start to exit.</param>
public sealed record WorkerProcessResult(int Rank, int ExitCode, string StandardOutput, string StandardError, bool Killed, TimeSpan Elapsed)
{
    /// <summary>True when the process exited by itself with code 0.</summary>
    public bool Succeeded => !Killed && ExitCode == 0;
}

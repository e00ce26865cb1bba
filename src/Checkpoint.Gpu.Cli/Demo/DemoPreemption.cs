using System.Runtime.InteropServices;

namespace CheckpointGpu.Cli.Demo;

/// <summary>
/// <c>ckpt demo --preempt-after SECONDS</c>: the training run arms its <see cref="CheckpointManager"/> for SIGTERM/SIGINT
/// (<see cref="CheckpointManager.ArmPreemption"/>), a timer sends the process itself SIGTERM after the given time, and
/// the loop writes a final checkpoint at its next step boundary (<see cref="CheckpointManager.SaveIfPreemptedAsync"/>).
/// Filled in by <see cref="DemoTraining.RunAsync"/>.
/// </summary>
internal sealed partial class DemoPreemption(TimeSpan after)
{
    private long _currentStep;
    private long _signalStep = -1;

    /// <summary>When to send SIGTERM, counted from the start of training.</summary>
    public TimeSpan After { get; } = after;

    /// <summary>True when the signal arrived and the loop stopped for it.</summary>
    public bool Preempted { get; set; }

    /// <summary>Steps completed when the signal arrived (-1 before).</summary>
    public long SignalStep => Interlocked.Read(ref _signalStep);

    /// <summary>The final checkpoint written after the signal.</summary>
    public string? FinalCheckpoint { get; set; }

    /// <summary>The step the final checkpoint holds (≥ <see cref="SignalStep"/>).</summary>
    public long FinalCheckpointStep { get; set; } = -1;

    /// <summary>Called by the loop after each completed step.</summary>
    public void StepCompleted(long step) => Interlocked.Exchange(ref _currentStep, step);

    /// <summary>Arms <paramref name="manager"/> (no process exit: the demo reports first) and starts the self-signal timer.</summary>
    /// <returns>The timer; dispose it when training ends.</returns>
    public IDisposable Arm(CheckpointManager manager)
    {
        manager.ArmPreemption(new PreemptionOptions { ExitProcess = false });
        manager.PreemptionSignalled += _ => Interlocked.Exchange(ref _signalStep, Interlocked.Read(ref _currentStep));
        return new Timer(_ => SendSigTerm(), null, After, Timeout.InfiniteTimeSpan);
    }

    private static void SendSigTerm()
    {
        const int SigTerm = 15;   // Linux and macOS
        if (Kill(Environment.ProcessId, SigTerm) != 0)
            Console.Error.WriteLine($"demo: could not send SIGTERM to itself (errno {Marshal.GetLastPInvokeError()}).");
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}

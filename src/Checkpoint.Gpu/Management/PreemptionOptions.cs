using System.Runtime.InteropServices;

namespace CheckpointGpu;

/// <summary>
/// How <see cref="CheckpointManager.ArmPreemption"/> reacts to a termination signal (TF's
/// <c>tf.distribute.experimental.TerminationConfig</c>: <c>restart_code</c>, <c>grace_period</c>).
/// </summary>
/// <remarks>Immutable after construction (init-only properties).</remarks>
public sealed class PreemptionOptions
{
    /// <summary>Exit code after the final checkpoint is durable: 42, TensorFlow's default restart code (<c>failure_handling.py</c>).</summary>
    public const int DefaultExitCode = 42;

    /// <summary>Exit code when the deadline passed (or the final save failed) before a final checkpoint was durable: 43.</summary>
    public const int DefaultDeadlineExitCode = 43;

    /// <summary>The default options.</summary>
    public static PreemptionOptions Default { get; } = new();

    /// <summary>The signals treated as preemption notices. Default SIGTERM and SIGINT.</summary>
    public IReadOnlyList<PosixSignal> Signals { get; init; } = [PosixSignal.SIGTERM, PosixSignal.SIGINT];

    /// <summary>
    /// Time from the signal until the final checkpoint must be durable (default 30 s, a common scheduler grace period).
    /// When it passes first, the manager writes what is missing to standard error and exits with <see cref="DeadlineExitCode"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Not positive.</exception>
    public TimeSpan Deadline
    {
        get => _deadline;
        init
        {
            if (value <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(value), value, "Must be positive.");
            _deadline = value;
        }
    }

    private TimeSpan _deadline = TimeSpan.FromSeconds(30);

    /// <summary>Exit code after a durable final checkpoint (default <see cref="DefaultExitCode"/>).</summary>
    public int ExitCode { get; init; } = DefaultExitCode;

    /// <summary>Exit code when no final checkpoint was durable in time (default <see cref="DefaultDeadlineExitCode"/>).</summary>
    public int DeadlineExitCode { get; init; } = DefaultDeadlineExitCode;

    /// <summary>
    /// When true (default) <see cref="CheckpointManager.SaveIfPreemptedAsync"/> ends the process after the final
    /// checkpoint; when false it returns the prefix and the caller exits (the deadline still applies).
    /// </summary>
    public bool ExitProcess { get; init; } = true;
}

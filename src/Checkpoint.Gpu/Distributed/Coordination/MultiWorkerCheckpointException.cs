namespace CheckpointGpu.Distributed;

/// <summary>
/// A multi-worker checkpoint was aborted: a worker failed, did not report within the timeout, or reported an
/// inconsistent prefix, world size or object graph. Nothing was published; the previous checkpoint is still the latest.
/// </summary>
/// <remarks>Thread-safe (immutable).</remarks>
public sealed class MultiWorkerCheckpointException : IOException
{
    /// <summary>Creates the exception.</summary>
    public MultiWorkerCheckpointException() : this("The multi-worker checkpoint was aborted.") { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">The message.</param>
    public MultiWorkerCheckpointException(string message) : base(message)
    {
        Prefix = "";
        MissingRanks = [];
        FailedRanks = [];
    }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public MultiWorkerCheckpointException(string message, Exception innerException) : base(message, innerException)
    {
        Prefix = "";
        MissingRanks = [];
        FailedRanks = [];
    }

    /// <summary>Creates the exception with full context.</summary>
    /// <param name="message">The message (should name the prefix and ranks).</param>
    /// <param name="prefix">The checkpoint prefix that was not published.</param>
    /// <param name="missingRanks">Ranks whose completion marker never arrived.</param>
    /// <param name="failedRanks">Ranks that reported a failure or an inconsistent marker.</param>
    /// <param name="innerException">The cause, if any.</param>
    public MultiWorkerCheckpointException(string message, string prefix, IReadOnlyList<int> missingRanks, IReadOnlyList<int> failedRanks, Exception? innerException = null)
        : base(message, innerException)
    {
        Prefix = prefix ?? "";
        MissingRanks = missingRanks ?? [];
        FailedRanks = failedRanks ?? [];
    }

    /// <summary>The checkpoint prefix that was not published.</summary>
    public string Prefix { get; }

    /// <summary>Ranks that did not report in time (empty when none).</summary>
    public IReadOnlyList<int> MissingRanks { get; }

    /// <summary>Ranks that reported failure or an inconsistent marker (empty when none).</summary>
    public IReadOnlyList<int> FailedRanks { get; }
}

namespace CheckpointGpu.Data;

/// <summary>
/// A dataset cannot be opened or an iterator state cannot be applied: a missing or empty file, a sequence length
/// longer than the data, fewer sequences than one batch, or a checkpointed iterator state that is malformed or was
/// written for a different dataset or iterator configuration.
/// </summary>
/// <remarks><see cref="FilePath"/> names the file involved (the first file of the dataset when no single file is).</remarks>
public sealed class DatasetException : Exception
{
    /// <summary>Creates an exception with a default message.</summary>
    public DatasetException() : base("The dataset is not usable.") { }

    /// <summary>Creates an exception.</summary>
    /// <param name="message">The message.</param>
    public DatasetException(string message) : base(message) { }

    /// <summary>Creates an exception with a cause.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public DatasetException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Creates an exception naming a file.</summary>
    /// <param name="message">The message (should already name the file).</param>
    /// <param name="filePath">The file involved.</param>
    /// <param name="innerException">The cause, if any.</param>
    public DatasetException(string message, string? filePath, Exception? innerException = null) : base(message, innerException)
    {
        FilePath = filePath;
    }

    /// <summary>The file involved, when one is.</summary>
    public string? FilePath { get; }
}

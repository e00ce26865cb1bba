using CheckpointGpu.Format;

namespace CheckpointGpu.Cli;

/// <summary>An error the CLI reports with a message and a specific exit code, without a stack trace.</summary>
/// <param name="message">What went wrong, file first.</param>
/// <param name="exitCode">One of <see cref="ExitCodes"/>.</param>
public sealed class CliException(string message, int exitCode) : Exception(message)
{
    /// <summary>The process exit code to use.</summary>
    public int ExitCode { get; } = exitCode;
}

/// <summary>Maps exceptions to the tool's exit codes and one-line messages.</summary>
internal static class CliErrors
{
    /// <summary>Classifies <paramref name="ex"/>: data problems → 1, usage/missing/IO/unsupported → 2.</summary>
    /// <returns>The exit code and the message to print, or <see langword="null"/> for unexpected exceptions.</returns>
    public static (int ExitCode, string Message)? Classify(Exception ex) => ex switch
    {
        CliException c => (c.ExitCode, c.Message),
        Data.DatasetException d => (ExitCodes.UsageOrUnsupported, d.FilePath is { } f && !d.Message.Contains(f, StringComparison.Ordinal) ? $"{f}: {d.Message}" : d.Message),
        CheckpointMismatchException m => (ExitCodes.DataProblem, m.Message),
        Devices.AcceleratorException a => (ExitCodes.UsageOrUnsupported, a.Message),   // the device cannot do it (memory, driver)
        CheckpointFormatException f => (f.IsUnsupportedInput ? ExitCodes.UsageOrUnsupported : ExitCodes.DataProblem, f.Message),
        FileNotFoundException fnf => (ExitCodes.UsageOrUnsupported, fnf.FileName is { } n && !fnf.Message.Contains(n, StringComparison.Ordinal) ? $"{n}: file not found. {fnf.Message}" : fnf.Message),
        DirectoryNotFoundException dnf => (ExitCodes.UsageOrUnsupported, dnf.Message),
        // The object graph names a key the index does not have: the checkpoint is inconsistent (TF: NotFound on restore).
        KeyNotFoundException knf => (ExitCodes.DataProblem, knf.Message),
        UnauthorizedAccessException ua => (ExitCodes.UsageOrUnsupported, ua.Message),
        NotSupportedException ns => (ExitCodes.UsageOrUnsupported, ns.Message),
        PathTooLongException pl => (ExitCodes.UsageOrUnsupported, pl.Message),
        IOException io => (ExitCodes.UsageOrUnsupported, io.Message),   // disk full, permissions, device errors
        OperationCanceledException => (ExitCodes.UsageOrUnsupported, "cancelled."),
        OutOfMemoryException oom => (ExitCodes.UsageOrUnsupported, "out of memory: " + oom.Message),
        AggregateException { InnerExceptions.Count: 1 } agg => Classify(agg.InnerExceptions[0]),
        _ => null,
    };

    /// <summary>
    /// Like <see cref="Classify"/> but total: an unexpected exception (a bug in this tool) is reported as exit code 1
    /// with "internal error", its type and message; the message is one line and names <paramref name="path"/> when it
    /// does not name a file already.
    /// </summary>
    public static (int ExitCode, string Message) Describe(Exception ex, string? path)
    {
        var (code, message) = Classify(ex)
            ?? (ExitCodes.DataProblem, $"internal error ({ex.GetType().Name}): {ex.Message} Rerun with --verbose for the stack trace and please report it.");
        message = CkptApp.OneLine(message);
        if (!string.IsNullOrEmpty(path) && !message.Contains(Path.GetFileName(Path.TrimEndingDirectorySeparator(path)), StringComparison.Ordinal)
            && !message.Contains('/') && !message.Contains('\\'))
            message = $"{path}: {message}";
        return (code, message);
    }
}

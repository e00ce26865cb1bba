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
    /// <summary>Classifies <paramref name="ex"/>: data problems → 1, usage/missing/unsupported → 2.</summary>
    /// <returns>The exit code and the message to print, or <see langword="null"/> for unexpected exceptions.</returns>
    public static (int ExitCode, string Message)? Classify(Exception ex) => ex switch
    {
        CliException c => (c.ExitCode, c.Message),
        CheckpointMismatchException m => (ExitCodes.DataProblem, m.Message),
        Devices.AcceleratorException a => (ExitCodes.UsageOrUnsupported, a.Message),   // the device cannot do it (memory, driver)
        CheckpointFormatException f => (f.IsUnsupportedInput ? ExitCodes.UsageOrUnsupported : ExitCodes.DataProblem, f.Message),
        FileNotFoundException fnf => (ExitCodes.UsageOrUnsupported, fnf.FileName is { } n ? $"{n}: file not found. {fnf.Message}" : fnf.Message),
        DirectoryNotFoundException dnf => (ExitCodes.UsageOrUnsupported, dnf.Message),
        KeyNotFoundException knf => (ExitCodes.UsageOrUnsupported, knf.Message),
        UnauthorizedAccessException ua => (ExitCodes.UsageOrUnsupported, ua.Message),
        NotSupportedException ns => (ExitCodes.UsageOrUnsupported, ns.Message),
        IOException io => (ExitCodes.DataProblem, io.Message),
        _ => null,
    };
}

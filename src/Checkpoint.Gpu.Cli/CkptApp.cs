using System.CommandLine;
using CheckpointGpu.Cli.Commands;

namespace CheckpointGpu.Cli;

/// <summary>
/// The <c>ckpt</c> tool as a callable: parses the arguments, runs the command and turns every failure into exit code
/// 1 (data problem) or 2 (usage, missing file, IO, unsupported input) with a one-line message on the error writer —
/// never an unhandled exception. <c>Program</c> calls it with the console; tests call it in-process.
/// </summary>
/// <remarks>
/// The read-only commands (inspect, verify, convert, diff, restore) write to the given writers; demo and bench still
/// write to the console. Not reentrant for demo/bench; the read-only commands share no static state.
/// </remarks>
internal static class CkptApp
{
    /// <summary>Root command description (also the tool's <c>--help</c>).</summary>
    private const string Description = """
        ckpt — inspect, verify, convert, diff and restore TensorFlow checkpoints with Checkpoint.Gpu; demo runs a training job with checkpoints and a restart; bench measures the IO pipeline.

        Exit codes: 0 fine; 1 data problem (corrupt file, checksum mismatch, checkpoints differ); 2 usage error, missing file, IO error or unsupported input. Errors are one line naming the file; --verbose adds the stack trace.
        """;

    /// <summary>Runs <c>ckpt</c> with <paramref name="args"/>.</summary>
    /// <param name="args">Command-line arguments (without the program name).</param>
    /// <param name="output">Standard output of the read-only commands and of <c>--help</c>.</param>
    /// <param name="error">Where error messages go.</param>
    /// <returns>0, 1 or 2 (<see cref="ExitCodes"/>).</returns>
    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error)
    {
        var verbose = new Option<bool>("--verbose") { Description = "On failure, print the exception's stack trace after the one-line message.", Recursive = true };
        var root = new RootCommand(Description)
        {
            InspectCommand.Create(output),
            VerifyCommand.Create(output),
            ConvertCommand.Create(output),
            DiffCommand.Create(output),
            RestoreCommand.Create(output),
            DemoCommand.Create(),
            BenchCommand.Create(),
            DevicesCommand.Create(),
        };
        root.Options.Add(verbose);

        ParseResult parse;
        try
        {
            parse = root.Parse(args);
        }
        catch (Exception ex)   // defensive: the parser itself should never throw on any argument list
        {
            error.WriteLine($"ckpt: cannot parse the arguments: {OneLine(ex.Message)}");
            return ExitCodes.UsageOrUnsupported;
        }
        if (parse.Errors.Count > 0)
        {
            foreach (var e in parse.Errors) error.WriteLine($"ckpt: {OneLine(e.Message)}");
            error.WriteLine("Run 'ckpt --help' for usage.");
            return ExitCodes.UsageOrUnsupported;
        }

        var isVerbose = parse.GetValue(verbose);
        try
        {
            return await parse.InvokeAsync(new InvocationConfiguration
            {
                EnableDefaultExceptionHandler = false, Output = output, Error = error,
                // null: System.CommandLine would otherwise answer SIGTERM/SIGINT by cancelling the command and returning
                // 143/130 after 2 s, cutting short `demo --preempt-after`, whose CheckpointManager handles SIGTERM itself
                // (final checkpoint, exit 42). Other commands keep the default signal behaviour (the process ends).
                ProcessTerminationTimeout = null,
            })
                .ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            var (code, message) = CliErrors.Describe(ex, FirstPathArgument(parse));
            error.WriteLine($"ckpt: {message}");
            if (isVerbose) error.WriteLine(ex.ToString());
            return code;
        }
    }

    /// <summary>The first positional argument of the command (its PATH), to name the file in messages that do not.</summary>
    private static string? FirstPathArgument(ParseResult parse)
    {
        foreach (var token in parse.CommandResult.Tokens)
            if (token.Type == System.CommandLine.Parsing.TokenType.Argument) return token.Value;
        return null;
    }

    internal static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();
}

using System.CommandLine;
using CheckpointGpu.Cli;
using CheckpointGpu.Cli.Commands;

var root = new RootCommand("""
    ckpt — inspect, verify, convert, diff and restore TensorFlow checkpoints with Checkpoint.Gpu; demo runs a training job with checkpoints and a restart; bench measures the IO pipeline.

    Exit codes: 0 fine; 1 data problem (corrupt file, checksum mismatch); 2 usage error, missing file or unsupported input.
    """)
{
    InspectCommand.Create(),
    VerifyCommand.Create(),
    ConvertCommand.Create(),
    DiffCommand.Create(),
    RestoreCommand.Create(),
    DemoCommand.Create(),
    BenchCommand.Create(),
};

var parse = root.Parse(args);
if (parse.Errors.Count > 0)
{
    foreach (var error in parse.Errors) Console.Error.WriteLine($"ckpt: {error.Message}");
    Console.Error.WriteLine("Run 'ckpt --help' for usage.");
    return ExitCodes.UsageOrUnsupported;
}

try
{
    // ProcessTerminationTimeout = null: System.CommandLine would otherwise answer SIGTERM/SIGINT by cancelling the command
    // and returning 143/130 after 2 s, cutting short `demo --preempt-after`, whose CheckpointManager handles SIGTERM itself
    // (final checkpoint, exit 42). Other commands keep the default signal behaviour (the process ends).
    return await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null });
}
catch (Exception ex) when (CliErrors.Classify(ex) is { } known)
{
    Console.Error.WriteLine($"ckpt: {known.Message}");
    return known.ExitCode;
}

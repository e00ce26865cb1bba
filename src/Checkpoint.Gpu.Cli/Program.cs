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
    DevicesCommand.Create(),
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
    return await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
}
catch (Exception ex) when (CliErrors.Classify(ex) is { } known)
{
    Console.Error.WriteLine($"ckpt: {known.Message}");
    return known.ExitCode;
}

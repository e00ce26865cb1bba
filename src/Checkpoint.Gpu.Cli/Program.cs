using CheckpointGpu.Cli;

// Every failure becomes exit code 1 or 2 with a one-line message (CkptApp); nothing escapes as an unhandled exception.
return await CkptApp.RunAsync(args, Console.Out, Console.Error);

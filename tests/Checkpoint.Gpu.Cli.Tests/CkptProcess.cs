using System.Diagnostics;

namespace CheckpointGpu.Cli.Tests;

/// <summary>Runs the built <c>ckpt</c> tool as a child process, the way a user does.</summary>
internal static class CkptProcess
{
    public sealed record Result(int ExitCode, string StdOut, string StdErr);

    private static readonly Lazy<string> s_dll = new(FindDll);

    public static Result Run(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(s_dll.Value);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_NOLOGO"] = "1";
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"ckpt {string.Join(' ', args)} did not finish within 2 minutes");
        }
        return new Result(p.ExitCode, stdout.GetAwaiter().GetResult(), stderr.GetAwaiter().GetResult());
    }

    private static string FindDll()
    {
        // The test project references the CLI project, so ckpt.dll (+ runtimeconfig) sits beside the tests.
        var local = Path.Combine(AppContext.BaseDirectory, "ckpt.dll");
        if (File.Exists(local) && File.Exists(Path.Combine(AppContext.BaseDirectory, "ckpt.runtimeconfig.json"))) return local;
        throw new FileNotFoundException("ckpt.dll was not built next to the CLI tests", local);
    }
}

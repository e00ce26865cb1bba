using System.CommandLine;
using CheckpointGpu.Devices;

namespace CheckpointGpu.Cli;

/// <summary>The <c>--device</c> names of the CLI and their <see cref="AcceleratorKind"/>s.</summary>
/// <remarks><c>cpu</c> and <c>opencl</c> are the project's own backends; <c>ilgpu-cpu</c>, <c>cuda</c> and <c>ilgpu-opencl</c> run through ILGPU.</remarks>
internal static class DeviceNames
{
    internal static readonly (string Name, AcceleratorKind Kind)[] All =
    [
        ("cpu", AcceleratorKind.Cpu),
        ("opencl", AcceleratorKind.OpenCL),
        ("ilgpu-cpu", AcceleratorKind.IlgpuCpu),
        ("cuda", AcceleratorKind.Cuda),
        ("ilgpu-opencl", AcceleratorKind.IlgpuOpenCL),
    ];

    internal static string HelpList => string.Join('|', All.Select(d => d.Name));

    internal static Option<string> CreateOption(string what)
    {
        var option = new Option<string>("--device")
        {
            Description = $"{what}: cpu or opencl (this project's backends), ilgpu-cpu, cuda or ilgpu-opencl (through ILGPU).",
            DefaultValueFactory = _ => "cpu",
        };
        option.AcceptOnlyFromAmong([.. All.Select(d => d.Name)]);
        return option;
    }

    internal static AcceleratorKind Parse(string name)
    {
        foreach (var (n, kind) in All)
            if (string.Equals(n, name, StringComparison.Ordinal)) return kind;
        throw new CliException($"unknown device '{name}'; use one of {HelpList}.", ExitCodes.UsageOrUnsupported);
    }

    internal static string Name(AcceleratorKind kind)
    {
        foreach (var (n, k) in All)
            if (k == kind) return n;
        return kind.ToString().ToLowerInvariant();
    }

    /// <summary>Exit 2 with the reason when no device of <paramref name="kind"/> can be opened.</summary>
    internal static void RequireSupported(AcceleratorKind kind)
    {
        if (Accelerator.IsSupported(kind) && Accelerator.Enumerate(kind).Count > 0) return;
        throw new CliException($"no {Name(kind)} accelerator is available on this machine: {Accelerator.GetUnsupportedReason(kind)}.", ExitCodes.UsageOrUnsupported);
    }
}

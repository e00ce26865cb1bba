using System.CommandLine;
using System.Globalization;
using CheckpointGpu.Cli.Output;
using CheckpointGpu.Devices;
using CheckpointGpu.Nn;

namespace CheckpointGpu.Cli.Commands;

/// <summary><c>ckpt devices [--json]</c>: every accelerator found, native and ILGPU, with what it can do.</summary>
/// <remarks>
/// "holds variables" is checked, not assumed: the device is opened and 4097 bytes make a host → device → host round
/// trip. "Nn kernels" says whether <see cref="NnKernels.IsSupported(AcceleratorKind)"/> has kernels for the backend.
/// Kinds without a device are listed with the reason (for example ILGPU's refusal of PoCL, or no CUDA device).
/// </remarks>
internal static class DevicesCommand
{
    internal sealed record Row(string Device, int Ordinal, string Name, long MemoryBytes, long MaxAllocationBytes, bool HoldsVariables, bool NnKernels, string? Note);

    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "Print one JSON document with every device and every unavailable kind's reason." };
        var command = new Command("devices", """
            List every accelerator this machine offers, through this project's backends (cpu, opencl) and through ILGPU
            (ilgpu-cpu, cuda, ilgpu-opencl): name, memory, whether it can hold variables (checked with a round trip) and
            whether the Nn training kernels run on it. Kinds without a device are listed with the reason. The first
            column is the value to pass to --device.

            Examples:
              ckpt devices
              ckpt devices --json
            """) { json };
        command.SetAction(parse => Run(parse.GetValue(json), Console.Out));
        return command;
    }

    internal static int Run(bool json, TextWriter output)
    {
        var rows = Collect();
        if (json)
        {
            JsonOutput.Write(output, w =>
            {
                w.WriteStartArray("devices");
                foreach (var r in rows)
                {
                    w.WriteStartObject();
                    w.WriteString("device", r.Device);
                    w.WriteBoolean("available", r.Ordinal >= 0);
                    if (r.Ordinal >= 0)
                    {
                        w.WriteNumber("ordinal", r.Ordinal);
                        w.WriteString("name", r.Name);
                        w.WriteNumber("memory_bytes", r.MemoryBytes);
                        w.WriteNumber("max_allocation_bytes", r.MaxAllocationBytes);
                        w.WriteBoolean("holds_variables", r.HoldsVariables);
                        w.WriteBoolean("nn_kernels", r.NnKernels);
                    }
                    if (r.Note is not null) w.WriteString(r.Ordinal >= 0 ? "note" : "reason", r.Note);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            });
            return ExitCodes.Ok;
        }
        var table = new TextTable("--device", "#", "name", "memory", "variables", "Nn kernels").AlignRight(1, 3);
        foreach (var r in rows.Where(r => r.Ordinal >= 0))
            table.Add(r.Device, r.Ordinal.ToString(CultureInfo.InvariantCulture), r.Name,
                string.Create(CultureInfo.InvariantCulture, $"{r.MemoryBytes / (double)(1L << 30):F1} GiB"),
                r.HoldsVariables ? "yes" : $"no: {r.Note}", r.NnKernels ? "yes" : "no");
        table.WriteTo(output);
        var missing = rows.Where(r => r.Ordinal < 0).ToArray();
        if (missing.Length > 0)
        {
            output.WriteLine();
            output.WriteLine("not available:");
            foreach (var r in missing) output.WriteLine($"  {r.Device,-13} {r.Note}");
        }
        return ExitCodes.Ok;
    }

    internal static List<Row> Collect()
    {
        var rows = new List<Row>();
        foreach (var (name, kind) in DeviceNames.All)
        {
            var devices = Accelerator.Enumerate(kind);
            if (devices.Count == 0)
            {
                rows.Add(new Row(name, -1, "", 0, 0, false, false, Accelerator.GetUnsupportedReason(kind) ?? "no device"));
                continue;
            }
            foreach (var info in devices)
            {
                var (holds, note) = TryRoundTrip(kind, info.Ordinal);
                rows.Add(new Row(name, info.Ordinal, info.Name, info.MemorySizeInBytes, info.MaxAllocationSizeInBytes, holds, NnKernels.IsSupported(kind), note));
            }
        }
        return rows;
    }

    private static (bool Ok, string? Note) TryRoundTrip(AcceleratorKind kind, int ordinal)
    {
        try
        {
            using var accelerator = Accelerator.Create(kind, ordinal);
            using var buffer = accelerator.Allocate(4097);
            var data = new byte[4097];
            for (var i = 0; i < data.Length; i++) data[i] = (byte)(i * 31 + 7);
            var back = new byte[data.Length];
            var stream = accelerator.DefaultStream;
            stream.EnqueueCopyFromHost(data, buffer.AsView());
            stream.EnqueueCopyToHost(buffer.AsView(), back);
            stream.Synchronize();
            return data.AsSpan().SequenceEqual(back) ? (true, null) : (false, "round trip returned different bytes");
        }
        catch (Exception ex) when (ex is AcceleratorException or NotSupportedException or InvalidOperationException)
        {
            return (false, $"{ex.GetType().Name}: {ex.Message}");
        }
    }
}

using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using CheckpointGpu.Cli.Output;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;

namespace CheckpointGpu.Cli.Commands;

/// <summary>
/// <c>ckpt restore PATH --device cpu|opencl|ilgpu-cpu|cuda|ilgpu-opencl [--resave DST_PREFIX] [--json]</c>: restores a checkpoint into
/// device buffers through restore-on-create and checks every value read back from the device.
/// </summary>
/// <remarks>
/// Uses <see cref="LoadedCheckpoint"/>: <c>Restore</c> is called before any object exists, then a generic tree
/// mirroring the checkpoint's object graph (or its variable names, for TF1) is built, so every value arrives the
/// moment its variable is created. Then <c>AssertConsumed</c>; each variable is read back from the device and its
/// masked CRC32C compared with the one TensorFlow stored. With <c>--resave</c> the tree is written again.
/// </remarks>
internal static class RestoreCommand
{
    /// <summary>Builds the command; its results go to <paramref name="output"/> (default: the console).</summary>
    public static Command Create(TextWriter? output = null)
    {
        var path = new Argument<string>("PATH") { Description = "Checkpoint prefix, its .index file, or a directory with a 'checkpoint' state file." };
        var device = DeviceNames.CreateOption("Accelerator for the variables");
        var resave = new Option<string?>("--resave") { Description = "Write the restored tree again to this prefix (TensorFlow-identical for TF-written object-based checkpoints).", HelpName = "DST_PREFIX" };
        var json = new Option<bool>("--json") { Description = "Print one JSON document with every variable and the result." };
        var command = new Command("restore", """
            Restore a checkpoint into accelerator memory by restore-on-create (a generic tree mirroring the checkpoint is
            built after Restore), assert that every value was consumed, read each variable back from the device and check
            it against TensorFlow's stored checksum. Exit code 1 if a value is not consumed or a checksum differs.

            Examples:
              ckpt restore ../shared/testdata/tf-checkpoints/obj-keras3-tf219-manager-3ckpts --device opencl
              ckpt restore train/ckpt-3 --device cpu --resave /tmp/copy/ckpt-3 --json
            """) { path, device, resave, json };
        command.SetAction(parse => Run(parse.GetValue(path)!, parse.GetValue(device)!, parse.GetValue(resave), parse.GetValue(json), output ?? Console.Out));
        return command;
    }

    private sealed record Checked(string Key, DType DType, TensorShape Shape, long Bytes, uint Stored, uint Computed);

    internal static int Run(string path, string device, string? resave, bool json, TextWriter output)
    {
        var prefix = CheckpointLocator.Resolve(path);
        var kind = DeviceNames.Parse(device);
        DeviceNames.RequireSupported(kind);

        var clock = Stopwatch.StartNew();
        using var accelerator = Accelerator.Create(kind);
        using var reader = TensorBundleReader.Open(prefix);
        using var mirror = LoadedCheckpoint.Restore(prefix, accelerator, log: null);
        var restoreSeconds = clock.Elapsed.TotalSeconds;
        mirror.Status.AssertConsumed();

        var totalBytes = mirror.Variables.Sum(v => v.Variable.LengthInBytes);
        var results = ByteProgress.Run("check", totalBytes, add => mirror.Variables.Select(m =>
        {
            var entry = reader.GetEntry(m.Key);
            var computed = MaskedCrc32C.ComputeMasked(m.Variable.ReadBytes());
            add(entry.Size);
            return new Checked(m.Key, entry.DType, entry.Shape, entry.Size, entry.Crc32C, computed);
        }).ToArray());
        var mismatches = results.Count(r => r.Stored != r.Computed);
        var written = resave is null || mismatches > 0 ? null : mirror.Write(Path.GetFullPath(resave));

        if (json) WriteJson(output, mirror, accelerator, results, written, restoreSeconds);
        else
        {
            var table = new TextTable("key", "dtype", "shape", "bytes", "crc32c").AlignRight(3);
            foreach (var r in results)
                table.Add(r.Key, DTypes.GetName(r.DType), r.Shape.ToString(), r.Bytes.ToString(CultureInfo.InvariantCulture),
                    r.Stored == r.Computed ? "ok" : $"MISMATCH stored 0x{r.Stored:x8}, device 0x{r.Computed:x8}");
            table.WriteTo(output);
            output.WriteLine();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{(mismatches == 0 ? "OK" : "MISMATCH")}  {mirror.Prefix}: {results.Length} variables ({totalBytes:N0} bytes) restored on create into {accelerator.Name} ({kind}), {mirror.HostValueCount} host values; all values consumed; {results.Length - mismatches} match TensorFlow's checksums read back from the device ({restoreSeconds:F3} s)"));
            if (written is not null) output.WriteLine($"resaved  {written}");
        }
        return mismatches == 0 ? ExitCodes.Ok : ExitCodes.DataProblem;
    }

    private static void WriteJson(TextWriter output, LoadedCheckpoint mirror, Accelerator accelerator, Checked[] results, string? written, double seconds)
    {
        JsonOutput.Write(output, w =>
        {
            w.WriteString("prefix", mirror.Prefix);
            w.WriteString("device", DeviceNames.Name(accelerator.Kind));
            w.WriteString("device_name", accelerator.Name);
            w.WriteBoolean("object_based", mirror.IsObjectBased);
            w.WriteBoolean("consumed", true);
            w.WriteBoolean("ok", results.All(r => r.Stored == r.Computed));
            w.WriteNumber("host_values", mirror.HostValueCount);
            w.WriteNumber("restore_seconds", Math.Round(seconds, 6));
            w.WriteStartArray("variables");
            foreach (var r in results)
            {
                w.WriteStartObject();
                w.WriteString("key", r.Key);
                w.WriteString("dtype", DTypes.GetName(r.DType));
                w.WriteStartArray("shape");
                foreach (var d in r.Shape.Dims) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteNumber("size", r.Bytes);
                w.WriteString("crc32c", $"0x{r.Stored:x8}");
                w.WriteString("device_crc32c", $"0x{r.Computed:x8}");
                w.WriteBoolean("ok", r.Stored == r.Computed);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            if (written is null) w.WriteNull("resaved");
            else w.WriteString("resaved", written);
        });
    }
}

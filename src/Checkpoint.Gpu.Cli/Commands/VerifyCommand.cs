using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using CheckpointGpu.Cli.Output;
using CheckpointGpu.Format;

namespace CheckpointGpu.Cli.Commands;

/// <summary><c>ckpt verify PATH [--json]</c>: reads every tensor of every shard and checks TensorFlow's checksums.</summary>
internal static class VerifyCommand
{
    /// <summary>Builds the command; its results go to <paramref name="output"/> (default: the console).</summary>
    public static Command Create(TextWriter? output = null)
    {
        var path = new Argument<string>("PATH") { Description = "Checkpoint prefix, its .index file, or a directory with a 'checkpoint' state file." };
        var json = new Option<bool>("--json") { Description = "Print one JSON document with the counts and every failure." };
        var command = new Command("verify", """
            Read every tensor of every shard and check the masked CRC32C stored in the index (strings: also their length checksums).
            Exit code 0 when all match, 1 when any entry is corrupt (each failure names file, key, shard and offset).

            Examples:
              ckpt verify ../shared/testdata/tf-checkpoints/obj-sharded2-rl
              ckpt verify train/ckpt-3 --json
            """) { path, json };
        command.SetAction(parse => Run(parse.GetValue(path)!, parse.GetValue(json), output ?? Console.Out));
        return command;
    }

    private sealed record Failure(string File, string Key, int Shard, long Offset, long Size, string Error, string Message);

    internal static int Run(string path, bool json, TextWriter output)
    {
        var prefix = CheckpointLocator.Resolve(path);
        using var reader = TensorBundleReader.Open(prefix);
        // Sequential order within each shard: the cheapest way through the data files.
        var entries = reader.EntriesInDataOrder;
        var totalBytes = entries.Sum(e => e.Size);
        var failures = new List<Failure>();
        var clock = Stopwatch.StartNew();

        ByteProgress.Run("verify", totalBytes, add =>
        {
            foreach (var e in entries)
            {
                try
                {
                    reader.ReadEncodedPayload(e, (chunk, _) => add(chunk.Length));
                }
                catch (CheckpointFormatException ex) when (!ex.IsUnsupportedInput)
                {
                    failures.Add(new Failure(ex.FilePath, e.Key, e.ShardId, e.Offset, e.Size, ex.Error.ToString(), ex.Message));
                }
            }
            return 0;
        });
        clock.Stop();

        if (json)
        {
            JsonOutput.Write(output, w =>
            {
                w.WriteString("prefix", reader.Prefix);
                w.WriteBoolean("ok", failures.Count == 0);
                w.WriteNumber("entries_checked", entries.Count);
                w.WriteNumber("bytes_checked", totalBytes);
                w.WriteNumber("seconds", Math.Round(clock.Elapsed.TotalSeconds, 6));
                w.WriteStartArray("failures");
                foreach (var f in failures)
                {
                    w.WriteStartObject();
                    w.WriteString("file", f.File);
                    w.WriteString("key", f.Key);
                    w.WriteNumber("shard", f.Shard);
                    w.WriteNumber("offset", f.Offset);
                    w.WriteNumber("size", f.Size);
                    w.WriteString("error", f.Error);
                    w.WriteString("message", f.Message);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            });
        }
        else
        {
            foreach (var f in failures) output.WriteLine($"FAILED  {f.Message}");
            var gbps = totalBytes / 1e9 / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{(failures.Count == 0 ? "OK" : "CORRUPT")}  {reader.Prefix}: {entries.Count - failures.Count} of {entries.Count} entries match their checksums ({totalBytes:N0} bytes in {reader.Header.ShardCount} shard(s), {clock.Elapsed.TotalSeconds:F3} s, {gbps:F2} GB/s)"));
        }
        return failures.Count == 0 ? ExitCodes.Ok : ExitCodes.DataProblem;
    }
}

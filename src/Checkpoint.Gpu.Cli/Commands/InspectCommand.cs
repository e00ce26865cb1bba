using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using CheckpointGpu.Cli.Output;
using CheckpointGpu.Format;
using CheckpointGpu.Format.Protos;

namespace CheckpointGpu.Cli.Commands;

/// <summary><c>ckpt inspect PATH [--json]</c>: lists entries and the object graph.</summary>
internal static class InspectCommand
{
    /// <summary>Builds the command; its results go to <paramref name="output"/> (default: the console).</summary>
    public static Command Create(TextWriter? output = null)
    {
        var path = new Argument<string>("PATH") { Description = "Checkpoint prefix, its .index file, or a directory with a 'checkpoint' state file (its latest checkpoint)." };
        var json = new Option<bool>("--json") { Description = "Print one JSON document: entries and object_graph (null for name-based checkpoints)." };
        var command = new Command("inspect", """
            List every entry (key, dtype, shape, bytes, shard) and, for object-based checkpoints, the object graph as paths.

            Examples:
              ckpt inspect ../shared/testdata/tf-checkpoints/obj-keras3-tf219-manager-3ckpts
              ckpt inspect train/ckpt-3 --json
            """) { path, json };
        command.SetAction(parse => Run(parse.GetValue(path)!, parse.GetValue(json), output ?? Console.Out));
        return command;
    }

    internal static int Run(string path, bool json, TextWriter output)
    {
        var prefix = CheckpointLocator.Resolve(path);
        using var reader = TensorBundleReader.Open(prefix);
        var graph = reader.IsObjectBased ? reader.ReadObjectGraph() : null;
        if (json) WriteJson(reader, graph, output);
        else WriteText(reader, graph, output);
        return ExitCodes.Ok;
    }

    private static void WriteText(TensorBundleReader reader, TrackableObjectGraph? graph, TextWriter output)
    {
        var entries = reader.Entries;
        var totalBytes = entries.Sum(e => e.Size);
        output.WriteLine($"checkpoint  {reader.Prefix}");
        output.WriteLine($"format      {(graph is not null ? "object-based (TF2)" : "name-based (TF1 Saver)")}, {reader.Header.ShardCount} shard(s), {reader.Header.Endianness.ToString().ToLowerInvariant()}-endian, producer {reader.Header.Producer}");
        output.WriteLine($"entries     {entries.Count}, {totalBytes.ToString("N0", CultureInfo.InvariantCulture)} bytes of tensor data");
        var compressed = entries.Any(e => e.Compression is not null);
        if (compressed)
        {
            // Issue 14: stored bytes and ratio per entry and in total.
            var stored = entries.Sum(e => e.StoredSize);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"compression LZ4 (Checkpoint.Gpu; TensorFlow refuses this file: min_consumer {reader.Header.MinConsumer}), {stored:N0} bytes stored, ratio {Ratio(totalBytes, stored)}"));
        }
        output.WriteLine();
        var table = compressed
            ? new TextTable("key", "dtype", "shape", "bytes", "shard", "stored", "ratio", "codec").AlignRight(3, 4, 5, 6)
            : new TextTable("key", "dtype", "shape", "bytes", "shard").AlignRight(3, 4);
        foreach (var e in entries)
        {
            string[] cells = [e.Key, DTypes.GetName(e.DType), e.Shape.ToString(), e.Size.ToString(CultureInfo.InvariantCulture),
                e.Slices.Count > 0 ? $"{e.Slices.Count} slices" : e.ShardId.ToString(CultureInfo.InvariantCulture)];
            if (compressed)
                cells = [.. cells, e.StoredSize.ToString(CultureInfo.InvariantCulture), e.IsPartitioned ? "" : Ratio(e.Size, e.StoredSize), Codec(e)];
            table.Add(cells);
        }
        table.WriteTo(output);

        if (graph is null) return;
        output.WriteLine();
        output.WriteLine($"object graph ({graph.Nodes.Count} nodes)");
        var paths = CheckpointKeys.NodeDisplayNames(graph);
        for (var id = 0; id < graph.Nodes.Count; id++)
        {
            var node = graph.Nodes[id];
            output.WriteLine($"  {id,4}  {paths[id]}");
            foreach (var a in node.Attributes)
                output.WriteLine($"          {a.Name} -> {a.CheckpointKey}");
            foreach (var s in node.SlotVariables)
                output.WriteLine($"          slot '{s.SlotName}' of node {s.OriginalVariableNodeId} -> node {s.SlotVariableNodeId}");
        }
    }

    private static string Ratio(long size, long stored) => stored == 0 ? "-" : (size / (double)stored).ToString("0.00", CultureInfo.InvariantCulture);

    private static string Codec(BundleEntry e) => e.Compression is { } c ? (c.ShuffleWidth > 1 ? $"lz4+shuffle{c.ShuffleWidth}" : "lz4") : "none";

    private static void WriteJson(TensorBundleReader reader, TrackableObjectGraph? graph, TextWriter output)
    {
        JsonOutput.Write(output, w =>
        {
            w.WriteString("prefix", reader.Prefix);
            w.WriteStartObject("header");
            w.WriteNumber("num_shards", reader.Header.ShardCount);
            w.WriteString("endianness", reader.Header.Endianness.ToString().ToLowerInvariant());
            w.WriteNumber("producer", reader.Header.Producer);
            w.WriteNumber("min_consumer", reader.Header.MinConsumer);
            w.WriteEndObject();
            w.WriteStartArray("entries");
            foreach (var e in reader.Entries) WriteEntry(w, e);
            w.WriteEndArray();
            if (graph is null) w.WriteNull("object_graph");
            else WriteGraph(w, graph);
        });
    }

    internal static void WriteEntry(Utf8JsonWriter w, BundleEntry e)
    {
        w.WriteStartObject();
        w.WriteString("key", e.Key);
        w.WriteString("dtype", DTypes.GetName(e.DType));
        w.WriteStartArray("shape");
        foreach (var d in e.Shape.Dims) w.WriteNumberValue(d);
        w.WriteEndArray();
        w.WriteNumber("size", e.Size);
        w.WriteNumber("shard", e.ShardId);
        w.WriteNumber("offset", e.Offset);
        w.WriteString("crc32c", $"0x{e.Crc32C:x8}");
        if (e.Slices.Count > 0) w.WriteNumber("slices", e.Slices.Count);
        if (e.Compression is { } c)
        {
            // Issue 14: stored (compressed) bytes and ratio.
            w.WriteStartObject("compression");
            w.WriteString("codec", Codec(e));
            w.WriteNumber("stored_size", c.StoredSize);
            w.WriteNumber("ratio", Math.Round(e.Size / (double)c.StoredSize, 4));
            w.WriteEndObject();
        }
        w.WriteEndObject();
    }

    private static void WriteGraph(Utf8JsonWriter w, TrackableObjectGraph graph)
    {
        var paths = CheckpointKeys.NodeDisplayNames(graph);
        w.WriteStartObject("object_graph");
        w.WriteStartArray("nodes");
        for (var id = 0; id < graph.Nodes.Count; id++)
        {
            var node = graph.Nodes[id];
            w.WriteStartObject();
            w.WriteNumber("id", id);
            w.WriteString("path", paths[id]);
            w.WriteStartArray("children");
            foreach (var c in node.Children)
            {
                w.WriteStartObject();
                w.WriteString("local_name", c.LocalName);
                w.WriteNumber("node_id", c.NodeId);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("attributes");
            foreach (var a in node.Attributes)
            {
                w.WriteStartObject();
                w.WriteString("name", a.Name);
                w.WriteString("full_name", a.FullName);
                w.WriteString("checkpoint_key", a.CheckpointKey);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("slot_variables");
            foreach (var s in node.SlotVariables)
            {
                w.WriteStartObject();
                w.WriteNumber("original_variable_node_id", s.OriginalVariableNodeId);
                w.WriteString("slot_name", s.SlotName);
                w.WriteNumber("slot_variable_node_id", s.SlotVariableNodeId);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }
}

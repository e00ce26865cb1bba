using System.Buffers.Binary;
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using CheckpointGpu.Cli.Output;
using CheckpointGpu.Format;

namespace CheckpointGpu.Cli.Commands;

/// <summary><c>ckpt diff A B [--json]</c>: compares two checkpoints key by key.</summary>
/// <remarks>
/// Reports keys only in A, keys only in B, dtype or shape changes, and for tensors present in both
/// with the same dtype and shape the maximum absolute element difference (numeric dtypes, compared
/// as <see cref="double"/>; complex dtypes per component) or the number of differing elements
/// (strings, bool). The object graph entry is compared byte-wise. Exit code 1 when anything differs.
/// </remarks>
internal static class DiffCommand
{
    /// <summary>Tensors are compared in pieces of this many bytes, so memory stays bounded.</summary>
    private const int ChunkBytes = 4 << 20;

    /// <summary>Builds the command; its results go to <paramref name="output"/> (default: the console).</summary>
    public static Command Create(TextWriter? output = null)
    {
        var a = new Argument<string>("A") { Description = "First checkpoint (prefix, .index file, or directory with a 'checkpoint' state file)." };
        var b = new Argument<string>("B") { Description = "Second checkpoint." };
        var json = new Option<bool>("--json") { Description = "Print one JSON document with only_in_a, only_in_b and changed entries." };
        var command = new Command("diff", """
            Compare two checkpoints: keys only in A or only in B, dtype or shape changes, and the maximum absolute
            difference per tensor. Exit code 0 when identical in content, 1 when they differ.

            Examples:
              ckpt diff ../shared/testdata/tf-checkpoints/obj-dqn-nstep-6ckpts/ckpt-1 ../shared/testdata/tf-checkpoints/obj-dqn-nstep-6ckpts/ckpt-6
              ckpt diff run1/ckpt-10 run2/ckpt-10 --json
            """) { a, b, json };
        command.SetAction(parse => Run(parse.GetValue(a)!, parse.GetValue(b)!, parse.GetValue(json), output ?? Console.Out));
        return command;
    }

    private sealed record Change(string Key, string Kind, string? A, string? B, double? MaxAbsDifference, long? DifferingElements);

    internal static int Run(string pathA, string pathB, bool json, TextWriter output)
    {
        using var a = TensorBundleReader.Open(CheckpointLocator.Resolve(pathA));
        using var b = TensorBundleReader.Open(CheckpointLocator.Resolve(pathB));
        var keysA = a.Entries.Where(e => !IsSliceKey(e.Key)).ToDictionary(e => e.Key, StringComparer.Ordinal);
        var keysB = b.Entries.Where(e => !IsSliceKey(e.Key)).ToDictionary(e => e.Key, StringComparer.Ordinal);
        var onlyA = keysA.Keys.Where(k => !keysB.ContainsKey(k)).Order(StringComparer.Ordinal).ToArray();
        var onlyB = keysB.Keys.Where(k => !keysA.ContainsKey(k)).Order(StringComparer.Ordinal).ToArray();
        var changes = new List<Change>();
        var compared = 0;
        foreach (var key in keysA.Keys.Where(keysB.ContainsKey).Order(StringComparer.Ordinal))
        {
            var ea = keysA[key];
            var eb = keysB[key];
            compared++;
            if (ea.DType != eb.DType)
                changes.Add(new Change(key, "dtype", DTypes.GetName(ea.DType), DTypes.GetName(eb.DType), null, null));
            else if (!ea.Shape.Equals(eb.Shape))
                changes.Add(new Change(key, "shape", ea.Shape.ToString(), eb.Shape.ToString(), null, null));
            else if (CompareValues(a, ea, b, eb) is { } change)
                changes.Add(change);
        }

        var same = onlyA.Length == 0 && onlyB.Length == 0 && changes.Count == 0;
        if (json) WriteJson(output, a.Prefix, b.Prefix, compared, onlyA, onlyB, changes, same);
        else
        {
            foreach (var k in onlyA) output.WriteLine($"only in A  {k}");
            foreach (var k in onlyB) output.WriteLine($"only in B  {k}");
            if (changes.Count > 0)
            {
                var table = new TextTable("key", "change", "A", "B", "max |A-B|").AlignRight(4);
                foreach (var c in changes)
                    table.Add(c.Key, c.Kind, c.A ?? "", c.B ?? "",
                        c.MaxAbsDifference?.ToString("G6", CultureInfo.InvariantCulture) ?? (c.DifferingElements is { } n ? $"{n} elements" : ""));
                table.WriteTo(output);
            }
            output.WriteLine(same
                ? $"same: {compared} entries with equal keys, dtypes, shapes and values"
                : $"different: {onlyA.Length} only in A, {onlyB.Length} only in B, {changes.Count} of {compared} shared entries changed");
        }
        return same ? ExitCodes.Ok : ExitCodes.DataProblem;
    }

    // Slice entries (keys starting with 0x00, format doc §3.4) are compared through their full-tensor entry's slices.
    private static bool IsSliceKey(string key) => key.Length > 0 && key[0] == '\0';

    private static Change? CompareValues(TensorBundleReader a, BundleEntry ea, TensorBundleReader b, BundleEntry eb)
    {
        if (ea.IsPartitioned || eb.IsPartitioned)
            return ea.Slices.SequenceEqual(eb.Slices) ? null : new Change(ea.Key, "slices", $"{ea.Slices.Count} slices", $"{eb.Slices.Count} slices", null, null);
        if (ea.DType == DType.String)
        {
            var sa = a.ReadStrings(ea);
            var sb = b.ReadStrings(eb);
            var differingStrings = sa.Zip(sb).LongCount(p => !p.First.AsSpan().SequenceEqual(p.Second));
            return differingStrings == 0 ? null : new Change(ea.Key, "value", null, null, null, differingStrings);
        }
        if (!DTypes.IsFixedSize(ea.DType))
        {
            // Variant and other opaque payloads: equal when the stored checksums and sizes agree.
            return ea.Size == eb.Size && ea.Crc32C == eb.Crc32C ? null : new Change(ea.Key, "value", $"crc 0x{ea.Crc32C:x8}", $"crc 0x{eb.Crc32C:x8}", null, null);
        }

        var width = DTypes.GetElementSize(ea.DType);
        var max = 0.0;
        var differing = 0L;
        if (ea.Size == 0) return null;

        // Bounded memory: A streams through the checksum-verifying reader into one window buffer; B's
        // checksum is verified in its own pass, then the same window of B is read positionally.
        b.VerifyEntry(eb);
        using var bData = File.OpenHandle(b.GetDataFilePath(eb.ShardId), FileMode.Open, FileAccess.Read, FileShare.Read);
        var swapB = b.Header.Endianness != BundleEndianness.Little;
        var window = (int)Math.Min((ChunkBytes / width) * width, ea.Size);
        var bufA = new byte[window];
        var bufB = new byte[window];
        var fill = 0;
        var windowStart = 0L;

        void CompareWindow(int length)
        {
            var got = 0;
            while (got < length)
            {
                var n = RandomAccess.Read(bData, bufB.AsSpan(got, length - got), eb.Offset + windowStart + got);
                if (n <= 0) throw new CliException($"{b.GetDataFilePath(eb.ShardId)}: data file ended inside '{eb.Key}'", ExitCodes.DataProblem);
                got += n;
            }
            if (swapB) SwapElements(ea.DType, bufB.AsSpan(0, length), width);
            for (var i = 0; i + width <= length; i += width)
            {
                var ra = bufA.AsSpan(i, width);
                var rb = bufB.AsSpan(i, width);
                if (ra.SequenceEqual(rb)) continue;
                differing++;
                max = Math.Max(max, MaxAbsDifference(ea.DType, ra, rb));
            }
            windowStart += length;
        }

        a.ReadTensor(ea, (piece, _) =>
        {
            while (!piece.IsEmpty)
            {
                var n = Math.Min(piece.Length, window - fill);
                piece[..n].CopyTo(bufA.AsSpan(fill));
                fill += n;
                piece = piece[n..];
                if (fill == window)
                {
                    CompareWindow(fill);
                    fill = 0;
                }
            }
        }, Math.Max(window, 64 << 10));   // pieces larger than the window are split above
        if (fill > 0) CompareWindow(fill);
        return differing == 0 ? null : new Change(ea.Key, "value", null, null, max, differing);
    }

    private static void SwapElements(DType dtype, Span<byte> data, int width)
    {
        // Complex numbers swap each component separately (byte_swap_tensor.cc).
        var unit = dtype is DType.Complex64 or DType.Complex128 ? width / 2 : width;
        if (unit == 1) return;
        for (var i = 0; i + unit <= data.Length; i += unit) data.Slice(i, unit).Reverse();
    }

    private static double MaxAbsDifference(DType dtype, ReadOnlySpan<byte> a, ReadOnlySpan<byte> b) => dtype switch
    {
        DType.Float => Math.Abs((double)BinaryPrimitives.ReadSingleLittleEndian(a) - BinaryPrimitives.ReadSingleLittleEndian(b)),
        DType.Double => Math.Abs(BinaryPrimitives.ReadDoubleLittleEndian(a) - BinaryPrimitives.ReadDoubleLittleEndian(b)),
        DType.Half => Math.Abs((double)BinaryPrimitives.ReadHalfLittleEndian(a) - (double)BinaryPrimitives.ReadHalfLittleEndian(b)),
        DType.BFloat16 => Math.Abs((double)BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(a) << 16)
                                   - BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(b) << 16)),
        DType.Int8 or DType.QInt8 => Math.Abs((double)(sbyte)a[0] - (sbyte)b[0]),
        DType.UInt8 or DType.QUInt8 or DType.Bool => Math.Abs((double)a[0] - b[0]),
        DType.Int16 or DType.QInt16 => Math.Abs((double)BinaryPrimitives.ReadInt16LittleEndian(a) - BinaryPrimitives.ReadInt16LittleEndian(b)),
        DType.UInt16 or DType.QUInt16 => Math.Abs((double)BinaryPrimitives.ReadUInt16LittleEndian(a) - BinaryPrimitives.ReadUInt16LittleEndian(b)),
        DType.Int32 or DType.QInt32 => Math.Abs((double)BinaryPrimitives.ReadInt32LittleEndian(a) - BinaryPrimitives.ReadInt32LittleEndian(b)),
        DType.UInt32 => Math.Abs((double)BinaryPrimitives.ReadUInt32LittleEndian(a) - BinaryPrimitives.ReadUInt32LittleEndian(b)),
        DType.Int64 => Math.Abs((double)BinaryPrimitives.ReadInt64LittleEndian(a) - BinaryPrimitives.ReadInt64LittleEndian(b)),
        DType.UInt64 => Math.Abs((double)BinaryPrimitives.ReadUInt64LittleEndian(a) - BinaryPrimitives.ReadUInt64LittleEndian(b)),
        DType.Complex64 => Math.Max(
            MaxAbsDifference(DType.Float, a[..4], b[..4]), MaxAbsDifference(DType.Float, a[4..], b[4..])),
        DType.Complex128 => Math.Max(
            MaxAbsDifference(DType.Double, a[..8], b[..8]), MaxAbsDifference(DType.Double, a[8..], b[8..])),
        _ => double.NaN,   // float8/int4: bytes differ but no numeric decoding here
    };

    private static void WriteJson(TextWriter output, string a, string b, int compared, string[] onlyA, string[] onlyB, List<Change> changes, bool same)
    {
        JsonOutput.Write(output, w =>
        {
            w.WriteString("a", a);
            w.WriteString("b", b);
            w.WriteBoolean("same", same);
            w.WriteNumber("compared", compared);
            w.WriteStartArray("only_in_a");
            foreach (var k in onlyA) w.WriteStringValue(k);
            w.WriteEndArray();
            w.WriteStartArray("only_in_b");
            foreach (var k in onlyB) w.WriteStringValue(k);
            w.WriteEndArray();
            w.WriteStartArray("changed");
            foreach (var c in changes)
            {
                w.WriteStartObject();
                w.WriteString("key", c.Key);
                w.WriteString("change", c.Kind);
                if (c.A is not null) w.WriteString("a", c.A);
                if (c.B is not null) w.WriteString("b", c.B);
                if (c.MaxAbsDifference is { } d)
                {
                    if (double.IsFinite(d)) w.WriteNumber("max_abs_difference", d);
                    else w.WriteString("max_abs_difference", d.ToString(CultureInfo.InvariantCulture));
                }
                if (c.DifferingElements is { } n) w.WriteNumber("differing_elements", n);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        });
    }
}

using System.Buffers.Binary;
using CheckpointGpu.Format.Table;
using Snappier;

namespace CheckpointGpu.Format.Tests;

/// <summary>
/// Builds SSTables with Snappy-compressed blocks the way TF's <c>table_builder.cc</c> WriteRawBlock writes them: stored
/// bytes = Snappy output, then type byte 1 and the masked CRC32C of (stored bytes ‖ type byte). Shared with the CLI tests.
/// </summary>
internal static class SnappyTable
{
    /// <summary>Rewrites <paramref name="table"/> (a valid table) with its data blocks and/or index block Snappy-compressed.</summary>
    public static byte[] Recompress(byte[] table, bool data, bool index)
    {
        var entries = TableReader.ReadAll(table, "src.index", int.MaxValue, 1 << 16);
        var output = new List<byte>();
        (int Offset, int Size) WriteBlock(byte[] contents, bool compress)
        {
            var stored = compress ? Snappy.CompressToArray(contents) : contents;
            var offset = output.Count;
            output.AddRange(stored);
            var type = compress ? TableFormat.SnappyCompression : TableFormat.NoCompression;
            output.Add(type);
            var crc = MaskedCrc32C.Mask(MaskedCrc32C.Extend(MaskedCrc32C.Compute(stored), [type]));
            var c = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(c, crc);
            output.AddRange(c);
            return (offset, stored.Length);
        }
        byte[] Handle((int Offset, int Size) h)
        {
            var list = new List<byte>();
            Varint.Write64(list, (ulong)h.Offset);
            Varint.Write64(list, (ulong)h.Size);
            return [.. list];
        }

        // Two data blocks (so the index block has two handles), each holding half of the entries.
        var indexBlock = new BlockBuilder(1);
        var half = Math.Max(1, entries.Count / 2);
        foreach (var part in new[] { entries.Take(half).ToList(), entries.Skip(half).ToList() })
        {
            if (part.Count == 0) continue;
            var block = new BlockBuilder(TableFormat.RestartInterval);
            foreach (var e in part) block.Add(e.Key, e.Value);
            var handle = WriteBlock(block.FinishAndReset(), data);
            indexBlock.Add(part[^1].Key, Handle(handle));
        }
        var meta = WriteBlock(new BlockBuilder(TableFormat.RestartInterval).FinishAndReset(), compress: false);
        var idx = WriteBlock(indexBlock.FinishAndReset(), index);
        var footer = new byte[TableFormat.FooterLength];
        var n = Varint.Write64(footer, (ulong)meta.Offset);
        n += Varint.Write64(footer.AsSpan(n), (ulong)meta.Size);
        n += Varint.Write64(footer.AsSpan(n), (ulong)idx.Offset);
        Varint.Write64(footer.AsSpan(n), (ulong)idx.Size);
        BinaryPrimitives.WriteUInt64LittleEndian(footer.AsSpan(40), TableFormat.Magic);
        output.AddRange(footer);
        return [.. output];
    }

}

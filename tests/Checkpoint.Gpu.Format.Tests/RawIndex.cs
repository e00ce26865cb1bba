using System.Buffers.Binary;
using CheckpointGpu.Format.Protos;
using CheckpointGpu.Format.Table;
using Google.Protobuf;

namespace CheckpointGpu.Format.Tests;

/// <summary>Crafts index files the real writer refuses to produce (bad protos, unsorted/duplicate keys).</summary>
internal static class RawIndex
{
    public static byte[] Header(int shards = 1, int endianness = 0, int producer = 1, int minConsumer = 0) =>
        new BundleHeaderProto { NumShards = shards, Endianness = (BundleHeaderProto.Types.Endianness)endianness, Version = new VersionDef { Producer = producer, MinConsumer = minConsumer } }.ToByteArray();

    public static byte[] Entry(int dtype, long[] dims, int shard, long offset, long size, uint crc)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims) shape.Dim.Add(new TensorShapeProto.Types.Dim { Size = d });
        return new BundleEntryProto { Dtype = (DataType)dtype, Shape = shape, ShardId = shard, Offset = offset, Size = size, Crc32C = crc }.ToByteArray();
    }

    /// <summary>A sorted, valid table (through our TableBuilder).</summary>
    public static byte[] Table(params (byte[] Key, byte[] Value)[] items)
    {
        using var ms = new MemoryStream();
        var tb = new TableBuilder(ms);
        foreach (var (k, v) in items) tb.Add(k, v);
        tb.Finish();
        return ms.ToArray();
    }

    /// <summary>One data block holding <paramref name="items"/> in the given order (no order check), with valid CRCs.</summary>
    public static byte[] UncheckedTable(params (byte[] Key, byte[] Value)[] items)
    {
        var block = new BlockBuilder(16);
        foreach (var (k, v) in items) block.Add(k, v);
        var data = block.FinishAndReset();
        var output = new List<byte>();
        void WriteBlock(byte[] contents)
        {
            output.AddRange(contents);
            var crc = MaskedCrc32C.Mask(MaskedCrc32C.Extend(MaskedCrc32C.Compute(contents), [0]));
            output.Add(0);
            var c = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(c, crc);
            output.AddRange(c);
        }
        WriteBlock(data);
        var metaOffset = output.Count;
        var meta = new BlockBuilder(16).FinishAndReset();
        WriteBlock(meta);
        var index = new BlockBuilder(1);
        var handle = new List<byte>();
        Varint.Write64(handle, 0);
        Varint.Write64(handle, (ulong)data.Length);
        index.Add([0xFF, 0xFF, 0xFF], handle.ToArray());
        var indexContents = index.FinishAndReset();
        var indexOffset = output.Count;
        WriteBlock(indexContents);
        var footer = new byte[48];
        var n = Varint.Write64(footer, (ulong)metaOffset);
        n += Varint.Write64(footer.AsSpan(n), (ulong)meta.Length);
        n += Varint.Write64(footer.AsSpan(n), (ulong)indexOffset);
        Varint.Write64(footer.AsSpan(n), (ulong)indexContents.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(footer.AsSpan(40), TableFormat.Magic);
        output.AddRange(footer);
        return output.ToArray();
    }

    /// <summary>Recomputes the trailer CRC of the block at [offset, offset+size).</summary>
    public static void FixBlockCrc(byte[] file, int offset, int size)
    {
        var crc = MaskedCrc32C.Mask(MaskedCrc32C.Extend(MaskedCrc32C.Compute(file.AsSpan(offset, size)), file.AsSpan(offset + size, 1)));
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(offset + size + 1), crc);
    }

    /// <summary>Footer handles (metaindex, index) of a well-formed table.</summary>
    public static ((int Offset, int Size) Meta, (int Offset, int Size) Index) Handles(byte[] file)
    {
        var footer = file.AsSpan(file.Length - 48, 40);
        var pos = 0;
        Varint.TryRead64(footer, ref pos, out var mo);
        Varint.TryRead64(footer, ref pos, out var ms);
        Varint.TryRead64(footer, ref pos, out var io);
        Varint.TryRead64(footer, ref pos, out var isz);
        return (((int)mo, (int)ms), ((int)io, (int)isz));
    }
}

using System.Text;
using CheckpointGpu.Format.Table;
using CheckpointGpu.TestSupport;
using Xunit.Abstractions;

namespace CheckpointGpu.Format.Tests;

/// <summary>Seeded and FsCheck property tests: arbitrary entries → write → read → equal.</summary>
public sealed class RoundTripPropertyTests(ITestOutputHelper output)
{
    private static readonly DType[] s_fixed =
        [DType.Float, DType.Double, DType.Int32, DType.UInt8, DType.Int16, DType.Int8, DType.Complex64, DType.Int64, DType.Bool,
         DType.BFloat16, DType.UInt16, DType.Complex128, DType.Half, DType.UInt32, DType.UInt64, DType.QInt8];

    private static string RandomKey(Random rng)
    {
        // Mix ASCII, '/', '.', multi-byte UTF-8 and astral characters: ordering must follow UTF-8 bytes, not UTF-16.
        string[] parts = ["a", "B", "_", "/", ".", "z", "é", "中", "\U0001F600", "0", "9", "\u007f", "ÿ"];
        var n = rng.Next(1, 12);
        var sb = new StringBuilder();
        for (var i = 0; i < n; i++) sb.Append(parts[rng.Next(parts.Length)]);
        return sb.ToString();
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    [InlineData(7)]
    [InlineData(8)]
    public void WriteThenRead_RandomBundle_EntriesAndPayloadsEqual(int seed)
    {
        output.WriteLine($"seed {seed}");
        var rng = new Random(seed);
        using var dir = new TempDir("prop");
        var prefix = dir.File("p");
        var shards = rng.Next(1, 4);
        var alignment = new[] { 1, 1, 4, 64 }[rng.Next(4)];
        var expected = new Dictionary<string, (BundleEntry Entry, object Value)>(StringComparer.Ordinal);
        using (var w = new TensorBundleWriter(prefix, new TensorBundleWriterOptions { ShardCount = shards, DataAlignmentInBytes = alignment }))
        {
            var count = rng.Next(0, 60);
            for (var i = 0; i < count; i++)
            {
                var key = RandomKey(rng);
                if (expected.ContainsKey(key)) continue;
                var shard = rng.Next(shards);
                var rank = rng.Next(0, 4);
                var dims = Enumerable.Range(0, rank).Select(_ => (long)rng.Next(0, 6)).ToArray();
                var shape = new TensorShape(dims);
                if (rng.Next(4) == 0)
                {
                    var values = Enumerable.Range(0, (int)shape.ElementCount).Select(_ => { var b = new byte[rng.Next(0, 40)]; rng.NextBytes(b); return b; }).ToArray();
                    expected[key] = (w.AddStrings(key, shape, values, shard), values);
                }
                else
                {
                    var dtype = s_fixed[rng.Next(s_fixed.Length)];
                    var data = new byte[shape.ElementCount * DTypes.GetElementSize(dtype)];
                    rng.NextBytes(data);
                    expected[key] = (w.Add(key, dtype, shape, data, shard), data);
                }
            }
            w.Finish();
        }

        using var r = TensorBundleReader.Open(prefix);
        Assert.Equal(shards, r.Header.ShardCount);
        Assert.Equal(expected.Count, r.Entries.Count);
        // Table order = unsigned UTF-8 byte order.
        var byteOrder = expected.Keys.Select(k => Encoding.UTF8.GetBytes(k)).Order(ByteKeyComparer.Instance).Select(Encoding.UTF8.GetString);
        Assert.Equal(byteOrder, r.Entries.Select(e => e.Key));
        foreach (var e in r.Entries)
        {
            var (want, value) = expected[e.Key];
            Assert.Equal(want, e);
            Assert.Equal(0, e.Offset % alignment);
            if (value is byte[][] strings) Assert.Equal(strings, r.ReadStrings(e));
            else
            {
                var buf = new byte[e.Size];
                r.ReadTensor(e, buf);
                Assert.Equal((byte[])value, buf);
            }
        }
    }

    [Fact]
    public void IndexSerialize_Property_ArbitraryEntriesRoundTripThroughTable()
    {
        PropertyCheck.ForAll<string[], long[], bool>((names, numbers, bigEndian) =>
        {
            var keys = (names ?? []).Where(n => !string.IsNullOrEmpty(n)).Distinct(StringComparer.Ordinal)
                .Where(n => Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(n)) == n).ToArray();
            numbers ??= [];
            var entries = keys.Select((k, i) =>
            {
                var v = numbers.Length == 0 ? i : Math.Abs(numbers[i % numbers.Length] % 1_000_000);
                return new BundleEntry(k, DType.Int8, new TensorShape(v), (int)(v % 3), v * 7, v, (uint)(v * 2654435761L));
            }).ToArray();
            var header = new BundleHeader(3, bigEndian ? BundleEndianness.Big : BundleEndianness.Little, 1, 0, []);
            using var ms = new MemoryStream();
            TensorBundleIndex.Serialize(ms, header, entries);
            var table = TableReader.ReadAll(ms.ToArray(), "p.index", 1000, 1 << 16);
            var parsedHeader = BundleProtoConverter.ParseHeader(table[0].Value, "p.index");
            var parsed = table.Skip(1).Select(t => BundleProtoConverter.ParseEntry(t.Key, t.Value, "p.index", parsedHeader, TensorBundleReaderOptions.Default, 0)).ToArray();
            var sorted = entries.OrderBy(e => Encoding.UTF8.GetBytes(e.Key), ByteKeyComparer.Instance).ToArray();
            return parsedHeader.Equals(header) && parsed.SequenceEqual(sorted);
        }, 200);
    }

    [Fact]
    public void TableBuilder_Property_ArbitraryByteKeysComeBackInUnsignedOrder()
    {
        PropertyCheck.ForAll<byte[][], int, bool>((raw, blockSeed, _) =>
        {
            var keys = (raw ?? []).Where(k => k is not null && k.Length > 0).Distinct(ByteKeyComparer.Instance).Order(ByteKeyComparer.Instance).ToArray();
            using var ms = new MemoryStream();
            var tb = new TableBuilder(ms, blockSize: 64 + Math.Abs(blockSeed % 512)); // small blocks → many blocks and separators
            foreach (var k in keys) tb.Add(k, k);
            tb.Finish();
            var back = TableReader.ReadAll(ms.ToArray(), "t", 100_000, 1 << 16);
            return back.Select(e => e.Key).SequenceEqual(keys, ByteKeyComparer.Instance)
                && back.All(e => e.Value.AsSpan().SequenceEqual(e.Key));
        }, 300);
    }
}

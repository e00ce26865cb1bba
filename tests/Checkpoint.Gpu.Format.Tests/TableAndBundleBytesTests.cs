using CheckpointGpu.Format.Table;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Format.Tests;

/// <summary>Byte-level examples from the spec, reproduced by our writers.</summary>
public sealed class TableAndBundleBytesTests
{
    private static byte[] Hex(string s) => Convert.FromHexString(s.Replace(" ", "", StringComparison.Ordinal).Replace("\n", "", StringComparison.Ordinal));

    // Spec §2.10: one float32 tensor v = [1.0, 2.0], bare bundle writer, 121-byte index.
    private static readonly byte[] s_workedExampleIndex = Hex(
        "00 00 06 08 01 1a 02 08 01" +
        "00 01 0f 76 08 01 12 04 12 02 08 02 28 08 35 59 3c e5 35" +
        "00 00 00 00 01 00 00 00" +
        "00 30 55 93 58" +
        "00 00 00 00 01 00 00 00 00 c0 f2 a1 b0" +
        "00 01 02 77 00 24 00 00 00 00 01 00 00 00" +
        "00 94 60 b2 cd" +
        "29 08 36 0e" + string.Concat(Enumerable.Repeat("00", 36)) + "57 fb 80 8b 24 75 47 db");

    [Fact]
    public void WorkedExample_Is121Bytes()
    {
        Assert.Equal(121, s_workedExampleIndex.Length);
    }

    [Fact]
    public void TensorBundleWriter_SpecWorkedExample_ReproducesIndexAndData()
    {
        using var dir = new TempDir("worked");
        var prefix = dir.File("tiny");
        using (var w = new TensorBundleWriter(prefix))
        {
            w.Add("v", DType.Float, new TensorShape(2), [0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40]);
            w.Finish();
        }
        Assert.Equal(s_workedExampleIndex, File.ReadAllBytes(prefix + ".index"));
        Assert.Equal(Hex("00 00 80 3f 00 00 00 40"), File.ReadAllBytes(prefix + ".data-00000-of-00001"));
    }

    [Fact]
    public void TableBuilder_SpecWorkedExample_ReproducesBytes()
    {
        using var ms = new MemoryStream();
        var tb = new TableBuilder(ms);
        tb.Add([], Hex("08 01 1a 02 08 01"));
        tb.Add("v"u8, Hex("08 01 12 04 12 02 08 02 28 08 35 59 3c e5 35"));
        tb.Finish();
        Assert.Equal(s_workedExampleIndex, ms.ToArray());
    }

    [Fact]
    public void TableReader_SpecWorkedExample_ReadsTwoEntries()
    {
        var entries = TableReader.ReadAll(s_workedExampleIndex, "x.index", 100, 100);
        Assert.Equal(2, entries.Count);
        Assert.Empty(entries[0].Key);
        Assert.Equal("v"u8.ToArray(), entries[1].Key);
    }

    [Fact]
    public void TableBuilder_EmptyMetaindex_IsSpecBytes()
    {
        using var ms = new MemoryStream();
        var tb = new TableBuilder(ms);
        tb.Add([], [1]);
        tb.Finish();
        var bytes = ms.ToArray();
        // §2.6: the metaindex block + trailer is always these 13 bytes, right after the one data block.
        var dataBlockLength = 3 + 1 + 8 + 5;
        Assert.Equal(Hex("00 00 00 00 01 00 00 00 00 c0 f2 a1 b0"), bytes.AsSpan(dataBlockLength, 13).ToArray());
        Assert.Equal(Hex("57 fb 80 8b 24 75 47 db"), bytes.AsSpan(bytes.Length - 8).ToArray());
    }

    [Theory]
    [InlineData("abcd", "abzz", "abd")]
    [InlineData("abc", "abcd", "abc")]      // prefix: unchanged
    [InlineData("ab\u00ff", "ac", "ab\u00ff")]
    [InlineData("a", "b", "a")]             // a+1 == b: unchanged
    [InlineData("save_counter/x", "zzz", "t")]
    public void ShortestSeparator_Examples(string start, string limit, string expected)
    {
        static byte[] L1(string s) => s.Select(c => (byte)c).ToArray();
        Assert.Equal(L1(expected), TableBuilder.ShortestSeparator(L1(start), L1(limit)));
    }

    [Fact]
    public void ShortSuccessor_Examples()
    {
        Assert.Equal("t"u8.ToArray(), TableBuilder.ShortSuccessor("save_counter/.ATTRIBUTES/VARIABLE_VALUE"u8));
        Assert.Equal("w"u8.ToArray(), TableBuilder.ShortSuccessor("vq_vae/x"u8));
        Assert.Equal(Array.Empty<byte>(), TableBuilder.ShortSuccessor([]));
        Assert.Equal(new byte[] { 0xFF, 0xFF }, TableBuilder.ShortSuccessor([0xFF, 0xFF]));
        Assert.Equal(new byte[] { 0xFF, 0x02 }, TableBuilder.ShortSuccessor([0xFF, 0x01, 0x07]));
    }

    [Fact]
    public void TableBuilder_ManyEntries_RestartsEvery16AndMultipleBlocks()
    {
        // ~1 MiB of values forces several 256 KiB data blocks; read back in order with all checks.
        using var ms = new MemoryStream();
        var tb = new TableBuilder(ms);
        var keys = Enumerable.Range(0, 5000).Select(i => System.Text.Encoding.UTF8.GetBytes($"key/{i:D6}")).ToArray();
        var value = new byte[200];
        foreach (var k in keys) tb.Add(k, value);
        tb.Finish();
        var read = TableReader.ReadAll(ms.ToArray(), "m.index", 10_000, 100);
        Assert.Equal(keys, read.Select(e => e.Key));
    }

    [Fact]
    public void TableBuilder_HugeEntry_StartsFreshBlock()
    {
        // §2.4: key+value ≥ 2×block_size flushes the current block first, so the huge entry sits alone.
        using var ms = new MemoryStream();
        var tb = new TableBuilder(ms, blockSize: 1024);
        tb.Add("a"u8, new byte[10]);
        tb.Add("b"u8, new byte[2048]);
        tb.Add("c"u8, new byte[10]);
        tb.Finish();
        var bytes = ms.ToArray();
        // First block holds only "a": entry (3 + 1 + 10) + restarts (4) + count (4) = 22 bytes, then trailer.
        Assert.Equal(Hex("00 01 0a 61"), bytes.AsSpan(0, 4).ToArray());
        Assert.Equal(new byte[] { 1, 0, 0, 0 }, bytes.AsSpan(18, 4).ToArray());
        Assert.Equal(3, TableReader.ReadAll(bytes, "h.index", 10, 10).Count);
    }

    [Fact]
    public void Header_DefaultBundle_IsSpecBytes()
    {
        var bytes = BundleProtoConverter.Serialize(BundleProtoConverter.ToProto(BundleHeader.Default));
        Assert.Equal(Hex("08 01 1a 02 08 01"), bytes);
        var big = BundleProtoConverter.Serialize(BundleProtoConverter.ToProto(BundleHeader.Default with { Endianness = BundleEndianness.Big }));
        Assert.Equal(Hex("08 01 10 01 1a 02 08 01"), big);
    }

    [Fact]
    public void Entry_SpecSerializations_Match()
    {
        // §3.3 observed encodings (CRC bytes replaced by a known value).
        var scalar = BundleProtoConverter.Serialize(BundleProtoConverter.ToProto(new BundleEntry("k", DType.Int64, TensorShape.Scalar, 0, 0, 8, 0x41DE7501)));
        Assert.Equal(Hex("08 09 12 00 28 08 35 01 75 de 41"), scalar);
        var matrix = BundleProtoConverter.Serialize(BundleProtoConverter.ToProto(new BundleEntry("k", DType.Float, new TensorShape(5, 30), 0, 20, 600, 1)));
        Assert.Equal(Hex("08 01 12 08 12 02 08 05 12 02 08 1e 20 14 28 d8 04 35 01 00 00 00"), matrix);
        var empty = BundleProtoConverter.Serialize(BundleProtoConverter.ToProto(new BundleEntry("k", DType.Float, new TensorShape(0), 0, 0, 0, MaskedCrc32C.Mask(0))));
        Assert.Equal(Hex("08 01 12 02 12 00 35 d8 ea 82 a2"), empty);
    }
}

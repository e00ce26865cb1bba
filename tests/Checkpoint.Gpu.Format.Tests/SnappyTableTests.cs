using System.Buffers.Binary;
using CheckpointGpu.Format.Table;
using CheckpointGpu.TestSupport;
using Snappier;

namespace CheckpointGpu.Format.Tests;

/// <summary>
/// Snappy-compressed table blocks (TF's <c>kSnappyCompression</c>, <c>tensorflow/tsl/lib/io/format.cc</c> ReadBlock).
/// The fixtures are built at test time the way TF's <c>table_builder.cc</c> WriteRawBlock writes a compressed block:
/// the stored bytes are the Snappy output, followed by type byte 1 and the masked CRC32C of (stored bytes ‖ type byte).
/// The expected entries and tensor values come from the same bundle written uncompressed, and every tensor must still
/// match the CRC32C stored in its entry.
/// </summary>
public sealed class SnappyTableTests : IDisposable
{
    private readonly TempDir _dir = new("snappy");

    public void Dispose() => _dir.Dispose();

    private string WriteSample(string name)
    {
        var prefix = _dir.File(name);
        using var w = new TensorBundleWriter(prefix);
        // Repetitive keys and values so that Snappy really compresses (copies, not only literals).
        for (var i = 0; i < 40; i++)
        {
            var values = new byte[64];
            for (var j = 0; j < values.Length; j++) values[j] = (byte)(i + (j % 4));
            w.Add($"model/layer_with_weights-{i}/kernel/.ATTRIBUTES/VARIABLE_VALUE", DType.Float, new TensorShape(4, 4), values);
        }
        w.AddStrings("_CHECKPOINTABLE_OBJECT_GRAPH", TensorShape.Scalar, [new byte[] { 1, 2, 3 }]);
        w.Finish();
        return prefix;
    }

    [Theory]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void Open_SnappyCompressedBlocks_ReadsSameEntriesAndVerifiedValuesAsUncompressed(bool data, bool index)
    {
        var plain = WriteSample("plain");
        var packed = _dir.File("packed");
        var compressed = SnappyTable.Recompress(File.ReadAllBytes(plain + ".index"), data, index);
        File.WriteAllBytes(packed + ".index", compressed);
        File.Copy(plain + ".data-00000-of-00001", packed + ".data-00000-of-00001");
        // The fixture really is compressed: type byte 1 after the first data block, and smaller than the original.
        if (data) Assert.True(compressed.Length < new FileInfo(plain + ".index").Length);

        using var a = TensorBundleReader.Open(plain);
        using var b = TensorBundleReader.Open(packed);
        Assert.Equal(a.Entries.Select(e => (e.Key, e.DType, e.Shape.ToString(), e.Offset, e.Size, e.Crc32C)),
                     b.Entries.Select(e => (e.Key, e.DType, e.Shape.ToString(), e.Offset, e.Size, e.Crc32C)));
        Assert.Equal(a.Header.ShardCount, b.Header.ShardCount);
        foreach (var e in b.Entries) b.VerifyEntry(e);   // stored CRC32C of every tensor still matches
    }

    [Fact]
    public void Open_CorruptSnappyContentsWithValidCrc_ThrowsMalformedBlockNamingFileAndOffset()
    {
        var plain = WriteSample("plain");
        var t = SnappyTable.Recompress(File.ReadAllBytes(plain + ".index"), data: true, index: false);
        // First data block at offset 0: keep the preamble, garble the element stream, fix the CRC as a writer would.
        var (meta, _) = RawIndex.Handles(t);
        var firstSize = FirstDataBlockSize(t);
        for (var i = 3; i < Math.Min(firstSize, 40); i++) t[i] = 0xFF;
        RawIndex.FixBlockCrc(t, 0, firstSize);
        Assert.True(meta.Offset > firstSize);
        var ex = OpenFails(t);
        Assert.Equal(CheckpointFormatError.MalformedBlock, ex.Error);
        Assert.Equal(0, ex.Offset);
        Assert.Contains("Snappy", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(uint.MaxValue, CheckpointFormatError.LimitExceeded, "index limit")]      // beyond MaxIndexFileBytes
    [InlineData(100u << 20, CheckpointFormatError.MalformedBlock, "cannot produce")]      // within it, but > 22x the block
    public void Open_SnappyPreambleClaimsHugeLength_ThrowsBeforeAllocating(uint declared, CheckpointFormatError expected, string phrase)
    {
        var plain = WriteSample("plain");
        var t = SnappyTable.Recompress(File.ReadAllBytes(plain + ".index"), data: true, index: false);
        var firstSize = FirstDataBlockSize(t);
        // Replace the preamble with a huge declared length without changing the block length:
        // rebuild the block as [preamble][rest of the stream], cut to the original size.
        var stream = t.AsSpan(0, firstSize).ToArray();
        var pos = 0;
        Assert.True(Varint.TryRead32(stream, ref pos, out _));
        var hostile = new byte[firstSize];
        var n = Varint.Write64(hostile, declared);
        stream.AsSpan(pos, firstSize - n).CopyTo(hostile.AsSpan(n));
        hostile.CopyTo(t, 0);
        RawIndex.FixBlockCrc(t, 0, firstSize);

        var before = GC.GetAllocatedBytesForCurrentThread();
        var ex = OpenFails(t);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(expected, ex.Error);
        Assert.Contains(phrase, ex.Message, StringComparison.Ordinal);
        Assert.True(allocated < 4 << 20, $"allocated {allocated} bytes for a block declaring {declared} bytes");
    }

    [Fact]
    public void Open_SnappyBlocksLargerThanMaxIndexFileBytes_ThrowsLimitExceeded()
    {
        var plain = WriteSample("plain");
        var t = SnappyTable.Recompress(File.ReadAllBytes(plain + ".index"), data: true, index: true);
        File.WriteAllBytes(_dir.File("small.index"), t);
        File.Copy(plain + ".data-00000-of-00001", _dir.File("small.data-00000-of-00001"));
        // The file itself fits; its decompressed blocks together do not.
        var options = new TensorBundleReaderOptions { MaxIndexFileBytes = t.Length + 16 };
        var ex = Assert.Throws<CheckpointFormatException>(() => TensorBundleReader.Open(_dir.File("small"), options));
        Assert.Equal(CheckpointFormatError.LimitExceeded, ex.Error);
    }

    /// <summary>
    /// A real TensorFlow-written index with a Snappy data block (TensorFlow Serving's
    /// <c>saved_model_half_plus_two_cpu/00000123/variables/variables.index</c>) is not committed; point
    /// <c>CKPT_SNAPPY_SAMPLE</c> at such a prefix to check it: every entry must verify against its stored CRC32C.
    /// </summary>
    [Fact]
    public void Open_TensorFlowWrittenSnappyIndex_FromEnvironment_VerifiesEveryEntry()
    {
        var prefix = Environment.GetEnvironmentVariable("CKPT_SNAPPY_SAMPLE");
        if (string.IsNullOrEmpty(prefix)) return;   // optional external sample
        var bytes = File.ReadAllBytes(prefix + ".index");
        Assert.Contains(TableReader.ReadAll(bytes, prefix, 1000, 1 << 16), _ => true);
        using var r = TensorBundleReader.Open(prefix);
        Assert.NotEmpty(r.Entries);
        foreach (var e in r.Entries.Where(e => !e.IsPartitioned)) r.VerifyEntry(e);
    }

    private static int FirstDataBlockSize(byte[] table)
    {
        // The index block's first handle names the first data block (offset 0).
        var (_, index) = RawIndex.Handles(table);
        var contents = table.AsSpan(index.Offset, index.Size).ToArray();
        if (table[index.Offset + index.Size] == TableFormat.SnappyCompression) contents = Snappy.DecompressToArray(contents);
        var pos = 0;
        Varint.TryRead32(contents, ref pos, out _);            // shared
        Varint.TryRead32(contents, ref pos, out var nonShared);
        Varint.TryRead32(contents, ref pos, out _);            // value length
        pos += (int)nonShared;
        Varint.TryRead64(contents, ref pos, out var offset);
        Varint.TryRead64(contents, ref pos, out var size);
        Assert.Equal(0UL, offset);
        return (int)size;
    }

    private CheckpointFormatException OpenFails(byte[] index)
    {
        var prefix = _dir.File("bad");
        File.WriteAllBytes(prefix + ".index", index);
        var ex = Assert.Throws<CheckpointFormatException>(() => TensorBundleReader.Open(prefix));
        Assert.Equal(prefix + ".index", ex.FilePath);
        Assert.StartsWith("bad.index: ", ex.Message, StringComparison.Ordinal);
        return ex;
    }
}

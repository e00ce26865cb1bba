using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Format.Tests;

public sealed class StringTensorTests
{
    [Fact]
    public void AddStrings_ScalarAbc_MatchesSpecPayloadAndCrc()
    {
        // Spec §4.3: payload 03 | 63 3f 7f 28 | 61 62 63 (size 8), entry CRC 0x199AD1C3.
        using var dir = new TempDir("str");
        var prefix = dir.File("s");
        BundleEntry e;
        using (var w = new TensorBundleWriter(prefix))
        {
            e = w.AddStrings("s", TensorShape.Scalar, ["abc"u8.ToArray()]);
            w.Finish();
        }
        Assert.Equal(8, e.Size);
        Assert.Equal(0x199AD1C3u, e.Crc32C);
        Assert.Equal(Convert.FromHexString("03633F7F28616263"), File.ReadAllBytes(prefix + ".data-00000-of-00001"));
        using var r = TensorBundleReader.Open(prefix);
        Assert.Equal("abc"u8.ToArray(), Assert.Single(r.ReadStrings(r.GetEntry("s"))));
    }

    [Fact]
    public void AddStrings_NoElements_PayloadIsMaskedZeroAndSpecCrc()
    {
        // Spec §4.3: n = 0 → payload d8 ea 82 a2, entry CRC 0x640CC1F6.
        using var dir = new TempDir("str0");
        var prefix = dir.File("s");
        using (var w = new TensorBundleWriter(prefix))
        {
            var e = w.AddStrings("empty", new TensorShape(0), []);
            Assert.Equal(0x640CC1F6u, e.Crc32C);
            Assert.Equal(4, e.Size);
            w.Finish();
        }
        Assert.Equal(Convert.FromHexString("D8EA82A2"), File.ReadAllBytes(prefix + ".data-00000-of-00001"));
        using var r = TensorBundleReader.Open(prefix);
        Assert.Empty(r.ReadStrings(r.GetEntry("empty")));
    }

    [Fact]
    public void ReadStrings_MixedLengthsIncludingEmptyAndBinary_RoundTrip()
    {
        using var dir = new TempDir("strmix");
        var prefix = dir.File("s");
        var values = new[] { Array.Empty<byte>(), new byte[] { 0, 0xFF, 0x80 }, new byte[300], "h\u00e9llo"u8.ToArray(), Array.Empty<byte>() };
        new Random(3).NextBytes(values[2]);
        using (var w = new TensorBundleWriter(prefix))
        {
            w.AddStrings("m", new TensorShape(5), values);
            w.Finish();
        }
        using var r = TensorBundleReader.Open(prefix);
        var e = r.GetEntry("m");
        Assert.Equal(values, r.ReadStrings(e));
        // The encoded-payload path verifies the same CRC and hands out the stored bytes.
        var raw = new List<byte>();
        r.ReadEncodedPayload(e, (c, _) => raw.AddRange(c.ToArray()));
        Assert.Equal(File.ReadAllBytes(prefix + ".data-00000-of-00001"), raw);
    }

    [Fact]
    public void ReadStrings_CorruptLengthChecksum_ThrowsChecksumMismatch()
    {
        using var dir = new TempDir("strbad");
        var prefix = dir.File("s");
        using (var w = new TensorBundleWriter(prefix))
        {
            w.AddStrings("s", TensorShape.Scalar, ["abc"u8.ToArray()]);
            w.Finish();
        }
        var data = prefix + ".data-00000-of-00001";
        var bytes = File.ReadAllBytes(data);
        bytes[2] ^= 1; // inside the length checksum
        File.WriteAllBytes(data, bytes);
        using var r = TensorBundleReader.Open(prefix);
        var ex = Assert.Throws<CheckpointFormatException>(() => r.ReadStrings(r.GetEntry("s")));
        Assert.Equal(CheckpointFormatError.ChecksumMismatch, ex.Error);
        Assert.Equal("s", ex.Key);
        Assert.StartsWith("s.data-00000-of-00001: checksum mismatch", ex.Message, StringComparison.Ordinal);
    }
}

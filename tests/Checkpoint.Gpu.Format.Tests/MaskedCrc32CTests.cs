using System.Text;

namespace CheckpointGpu.Format.Tests;

public sealed class MaskedCrc32CTests
{
    [Fact]
    public void Compute_SpecCheckValues_Match()
    {
        // Spec §2.9 / §14 (TF crc32c_test.cc and the standard CRC-32C check value).
        Assert.Equal(0xE3069283u, MaskedCrc32C.Compute("123456789"u8));
        Assert.Equal(0x8A9136AAu, MaskedCrc32C.Compute(new byte[32]));
        Assert.Equal(0x62A8AB43u, MaskedCrc32C.Compute(Enumerable.Repeat((byte)0xFF, 32).ToArray()));
        Assert.Equal(0x46DD794Eu, MaskedCrc32C.Compute(Enumerable.Range(0, 32).Select(i => (byte)i).ToArray()));
        Assert.Equal(0u, MaskedCrc32C.Compute([]));
    }

    [Fact]
    public void Mask_SpecValues_Match()
    {
        Assert.Equal(0xA282EAD8u, MaskedCrc32C.Mask(0));
        Assert.Equal(0xC514CFADu, MaskedCrc32C.Compute([1, 0, 0, 0, 0, 0, 0, 0]));
        Assert.Equal(0x41DE7501u, MaskedCrc32C.Mask(0xC514CFADu));
        Assert.Equal(0xC514CFADu, MaskedCrc32C.Unmask(0x41DE7501u));
    }

    [Fact]
    public void Extend_SplitAnywhere_EqualsWhole()
    {
        // Covers the 3-lane paths (768 B and 24 KiB thresholds) and their tails.
        var rng = new Random(1234);
        foreach (var length in new[] { 0, 1, 7, 8, 9, 383, 384, 767, 768, 769, 2000, 3071, 3072, 4096, 24575, 24576, 24577, 100_003, 1 << 20 })
        {
            var data = new byte[length];
            rng.NextBytes(data);
            var whole = MaskedCrc32C.Compute(data);
            Assert.Equal(Reference(data), whole);
            var cut = length == 0 ? 0 : rng.Next(length);
            Assert.Equal(whole, MaskedCrc32C.Extend(MaskedCrc32C.Compute(data.AsSpan(0, cut)), data.AsSpan(cut)));
        }
    }

    [Fact]
    public void Compute_UnalignedStart_MatchesReference()
    {
        var data = new byte[70_001];
        new Random(5).NextBytes(data);
        for (var start = 0; start < 9; start++)
            Assert.Equal(Reference(data.AsSpan(start)), MaskedCrc32C.Compute(data.AsSpan(start)));
    }

    [Fact]
    public void MaskUnmask_Property_RoundTripsAndMaskDiffers()
    {
        PropertyCheck.ForAll<uint>(x => MaskedCrc32C.Unmask(MaskedCrc32C.Mask(x)) == x && MaskedCrc32C.Mask(MaskedCrc32C.Unmask(x)) == x, 1000);
    }

    [Fact]
    public void Compute_Property_MatchesBitwiseReference()
    {
        PropertyCheck.ForAll<byte[]>(data => MaskedCrc32C.Compute(data) == Reference(data), 300);
    }

    /// <summary>Bit-at-a-time CRC-32C straight from the definition (reflected 0x82F63B78, init/xorout all ones).</summary>
    private static uint Reference(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data)
        {
            crc ^= b;
            for (var k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
        }
        return ~crc;
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(0, 17)]
    [InlineData(9, 0)]
    [InlineData(1, 1)]
    [InlineData(8193, 70001)]
    [InlineData(3 * 8192 + 5, 1 << 20)]
    public void Combine_TwoParts_EqualsCrcOfConcatenation(int lengthA, int lengthB)
    {
        var rng = new Random(lengthA * 31 + lengthB);
        var bytes = new byte[lengthA + lengthB];
        rng.NextBytes(bytes);
        var whole = MaskedCrc32C.Compute(bytes);
        var combined = MaskedCrc32C.Combine(MaskedCrc32C.Compute(bytes.AsSpan(0, lengthA)), MaskedCrc32C.Compute(bytes.AsSpan(lengthA)), lengthB);
        Assert.Equal(whole, combined);
    }

    [Fact]
    public void Combine_NegativeLength_Throws() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => MaskedCrc32C.Combine(0, 0, -1));
}

using CheckpointGpu.Format;

namespace CheckpointGpu.Pipeline.Tests;

public sealed class SavePlanTests
{
    private static SaveItem Host(string key, int bytes, int shard = 0) =>
        new(key, DType.UInt8, new TensorShape(bytes), SaveSource.FromHost(new byte[bytes]), shard);

    [Fact]
    public void Create_ItemsInGivenOrder_PacksEachShardContiguouslyWithoutPadding()
    {
        var plan = SavePlan.Create([Host("b", 17, 0), Host("a", 4095, 1), Host("c", 0, 0), Host("d", 4097, 0), Host("e", 1, 1)], shardCount: 2);
        Assert.Equal([0L, 17, 17], plan.GetShardTensors(0).Select(t => t.Offset));
        Assert.Equal([0L, 4095], plan.GetShardTensors(1).Select(t => t.Offset));
        Assert.Equal([17L + 4097, 4096], plan.ShardSizes);
        Assert.Equal(17L + 4097 + 4096, plan.TotalBytes);
        Assert.Equal(["b", "a", "c", "d", "e"], plan.Tensors.Select(t => t.Key));
    }

    [Fact]
    public void Create_DuplicateKey_Throws() =>
        Assert.Throws<ArgumentException>(() => SavePlan.Create([Host("a", 1), Host("a", 2)]));

    [Fact]
    public void Create_EmptyKey_Throws() =>
        Assert.Throws<ArgumentException>(() => SavePlan.Create([Host("", 1)]));

    [Fact]
    public void Create_ShardOutOfRange_Throws() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => SavePlan.Create([Host("a", 1, shard: 1)], shardCount: 1));

    [Fact]
    public void Create_SizeDisagreesWithShape_Throws() =>
        Assert.Throws<ArgumentException>(() => SavePlan.Create([new SaveItem("a", DType.Float, new TensorShape(3), SaveSource.FromHost(new byte[11]))]));

    [Fact]
    public void Create_StringWithoutEncodedSource_Throws() =>
        Assert.Throws<ArgumentException>(() => SavePlan.Create([new SaveItem("s", DType.String, TensorShape.Scalar, SaveSource.FromHost(new byte[5]))]));

    [Fact]
    public void Create_ResourceDType_Throws() =>
        Assert.Throws<ArgumentException>(() => SavePlan.Create([new SaveItem("r", DType.Resource, TensorShape.Scalar, SaveSource.FromEncoded(new byte[1], 0))]));

    [Fact]
    public void EncodedTensor_FromStrings_MatchesSpecExample()
    {
        // Spec §4.3: scalar "abc" → 03 | 63 3f 7f 28 | 61 62 63, entry CRC 0x199AD1C3.
        var e = EncodedTensor.FromStrings([System.Text.Encoding.ASCII.GetBytes("abc")]);
        Assert.Equal(new byte[] { 0x03, 0x63, 0x3f, 0x7f, 0x28, 0x61, 0x62, 0x63 }, e.Payload.ToArray());
        Assert.Equal(0x199AD1C3u, e.MaskedCrc32C);
        var empty = EncodedTensor.FromStrings([]);
        Assert.Equal(new byte[] { 0xd8, 0xea, 0x82, 0xa2 }, empty.Payload.ToArray());
        Assert.Equal(0x640CC1F6u, empty.MaskedCrc32C);
    }

    [Fact]
    public void ToEntries_UsesPlanOffsetsAndGivenChecksums()
    {
        var plan = SavePlan.Create([Host("x", 8), Host("y", 4)]);
        var entries = plan.ToEntries([11u, 22u]);
        Assert.Equal(new BundleEntry("y", DType.UInt8, new TensorShape(4), 0, 8, 4, 22u), entries[1]);
        Assert.Throws<ArgumentException>(() => plan.ToEntries([1u]));
    }
}

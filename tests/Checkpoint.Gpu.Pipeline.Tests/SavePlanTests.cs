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

    // ------------------------------------------------------------------ slices of partitioned tensors

    private const string W = "layer/kernel/.ATTRIBUTES/VARIABLE_VALUE";

    private static TensorSliceExtent X(long start, long length) => new(start, length);

    /// <summary>A slice item of a float tensor built without <see cref="SaveItem.ForSlice"/>, so that Create's own checks run.</summary>
    private static SaveItem Slice(string key, TensorShape fullShape, TensorSlice slice, DType dtype = DType.Float, int shard = 0, long? bytes = null)
    {
        var n = bytes ?? slice.GetSliceShape(fullShape).ElementCount * 4;
        return new SaveItem(key, dtype, fullShape, SaveSource.FromHost(new byte[n]), shard) { Slice = slice };
    }

    private static readonly TensorShape S64 = new(6, 4);

    public static TheoryData<string> InvalidSliceCases() =>
        ["rank differs", "outside shape", "same slice twice", "whole then slice", "slice then whole", "covering slice then slice",
         "dtype disagrees", "full shape disagrees", "string dtype", "size differs"];

    private static SaveItem[] InvalidSliceItems(string name) => name switch
    {
        "rank differs" => [Slice(W, S64, new TensorSlice(X(0, 3)), bytes: 48)],
        "outside shape" => [Slice(W, S64, new TensorSlice(X(4, 3), TensorSliceExtent.Full), bytes: 48)],
        "same slice twice" => [Slice(W, S64, new TensorSlice(X(0, 3), TensorSliceExtent.Full)), Slice(W, S64, new TensorSlice(X(0, 3), TensorSliceExtent.Full), shard: 1)],
        "whole then slice" => [new SaveItem(W, DType.Float, S64, SaveSource.FromHost(new byte[96])), Slice(W, S64, new TensorSlice(X(0, 3), TensorSliceExtent.Full))],
        "slice then whole" => [Slice(W, S64, new TensorSlice(X(0, 3), TensorSliceExtent.Full)), new SaveItem(W, DType.Float, S64, SaveSource.FromHost(new byte[96]))],
        "covering slice then slice" => [Slice(W, S64, TensorSlice.Full(2)), Slice(W, S64, new TensorSlice(X(0, 3), TensorSliceExtent.Full))],
        "dtype disagrees" => [Slice(W, S64, new TensorSlice(X(0, 3), TensorSliceExtent.Full)), Slice(W, S64, new TensorSlice(X(3, 3), TensorSliceExtent.Full), DType.Int32)],
        "full shape disagrees" => [Slice(W, S64, new TensorSlice(X(0, 3), TensorSliceExtent.Full)), Slice(W, new TensorShape(7, 4), new TensorSlice(X(3, 3), TensorSliceExtent.Full))],
        "string dtype" => [new SaveItem(W, DType.String, new TensorShape(2), SaveSource.FromEncoded(EncodedTensor.FromStrings([[1], [2]])))
            { Slice = new TensorSlice(X(0, 1)) }],
        "size differs" => [Slice(W, S64, new TensorSlice(X(0, 3), TensorSliceExtent.Full), bytes: 96)],
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, null),
    };

    [Theory]
    [MemberData(nameof(InvalidSliceCases))]
    public void Create_InvalidSlices_ThrowsArgumentExceptionNamingTheKey(string name)
    {
        var ex = Assert.Throws<ArgumentException>(() => SavePlan.Create(InvalidSliceItems(name), shardCount: 2));
        Assert.Contains(W, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ForSlice_InvalidSlice_ThrowsArgumentException()
    {
        var slice = new TensorSlice(X(0, 3), TensorSliceExtent.Full);
        Assert.Throws<ArgumentException>(() => SaveItem.ForSlice(W, DType.Float, S64, new TensorSlice(X(0, 3)), SaveSource.FromHost(new byte[48])));
        Assert.Throws<ArgumentException>(() => SaveItem.ForSlice(W, DType.Float, S64, new TensorSlice(X(5, 3), TensorSliceExtent.Full), SaveSource.FromHost(new byte[48])));
        Assert.Throws<ArgumentException>(() => SaveItem.ForSlice(W, DType.Float, S64, slice, SaveSource.FromHost(new byte[47])));
        Assert.Throws<ArgumentException>(() => SaveItem.ForSlice(W, DType.String, S64, slice, SaveSource.FromEncoded(new byte[4], 0)));
        Assert.Throws<ArgumentException>(() => SaveItem.ForSlice("", DType.Float, S64, slice, SaveSource.FromHost(new byte[48])));
        Assert.Throws<ArgumentNullException>(() => SaveItem.ForSlice(W, DType.Float, S64, null!, SaveSource.FromHost(new byte[48])));
        var item = SaveItem.ForSlice(W, DType.Float, S64, slice, SaveSource.FromHost(new byte[48]), shardId: 1);
        Assert.Equal(new SaveItem(W, DType.Float, S64, item.Source, 1) { Slice = slice }, item);
    }

    [Fact]
    public void Create_SlicesOfOneKey_PlansSliceEntriesAndOneFullEntryInOrderOfFirstAppearance()
    {
        var s0 = new TensorSlice(X(0, 3), TensorSliceExtent.Full);
        var s1 = new TensorSlice(X(3, 3), TensorSliceExtent.Full);
        var c0 = new TensorSlice(TensorSliceExtent.Full, X(0, 1));
        var plan = SavePlan.Create(
        [
            Slice(W, S64, s1, shard: 1), Slice("cols", new TensorShape(2, 2), c0), Host("x", 3), Slice(W, S64, s0),
        ], shardCount: 2);
        Assert.Equal(6, plan.EntryCount);
        Assert.Equal([W, "cols", "x", W], plan.Tensors.Select(t => t.Key));
        Assert.Equal([true, true, false, true], plan.Tensors.Select(t => t.IsSliceEntry));
        Assert.Equal(new TensorShape(3, 4), plan.Tensors[0].EntryShape);
        Assert.Equal(W + ":3,3:-", plan.Tensors[0].EntryKey);
        Assert.Equal(TensorSlice.EncodeSliceKey(W, s1), plan.Tensors[0].EntryKeyUtf8.ToArray());
        Assert.Equal([0L, 8, 11], plan.GetShardTensors(0).Select(t => t.Offset));

        var entries = plan.ToEntries([1u, 2u, 3u, 4u]);
        Assert.Equal(6, entries.Count);
        var e0 = entries[0];
        Assert.Equal(W + ":3,3:-", e0.Key);
        Assert.Equal(TensorSlice.EncodeSliceKey(W, s1), e0.KeyUtf8.ToArray());
        Assert.True(e0.IsSliceEntry);
        Assert.Equal((DType.Float, new TensorShape(3, 4), 1, 0L, 48L, 1u), (e0.DType, e0.Shape, e0.ShardId, e0.Offset, e0.Size, e0.Crc32C));
        Assert.Equal(new BundleEntry("x", DType.UInt8, new TensorShape(3), 0, 8, 3, 3u), entries[2]);
        Assert.Equal(new BundleEntry(W, DType.Float, S64, 0, 0, 0, 0, [s1, s0]), entries[4]);
        Assert.Equal(new BundleEntry("cols", DType.Float, new TensorShape(2, 2), 0, 0, 0, 0, [c0]), entries[5]);
    }

    [Fact]
    public void Create_SliceCoveringWholeTensor_PlansAnOrdinaryEntry()
    {
        var plan = SavePlan.Create([Slice(W, S64, new TensorSlice(X(0, 6), X(0, 4)))]);
        var t = Assert.Single(plan.Tensors);
        Assert.False(t.IsSliceEntry);
        Assert.Equal(W, t.EntryKey);
        Assert.Equal(S64, t.EntryShape);
        Assert.Equal(new BundleEntry(W, DType.Float, S64, 0, 0, 96, 7u), Assert.Single(plan.ToEntries([7u])));
    }
}

namespace CheckpointGpu.Format.Tests;

public sealed class PrimitivesTests
{
    [Theory]
    [InlineData(DType.Float, 1, 4, "float32")]
    [InlineData(DType.Double, 2, 8, "float64")]
    [InlineData(DType.Int32, 3, 4, "int32")]
    [InlineData(DType.UInt8, 4, 1, "uint8")]
    [InlineData(DType.Int64, 9, 8, "int64")]
    [InlineData(DType.Bool, 10, 1, "bool")]
    [InlineData(DType.BFloat16, 14, 2, "bfloat16")]
    [InlineData(DType.UInt16, 17, 2, "uint16")]
    [InlineData(DType.Complex128, 18, 16, "complex128")]
    [InlineData(DType.Half, 19, 2, "float16")]
    [InlineData(DType.UInt32, 22, 4, "uint32")]
    [InlineData(DType.UInt64, 23, 8, "uint64")]
    [InlineData(DType.Complex64, 8, 8, "complex64")]
    public void DTypes_SpecTable_NumbersWidthsNames(DType dtype, int wire, int width, string name)
    {
        Assert.Equal(wire, (int)dtype);
        Assert.Equal(width, DTypes.GetElementSize(dtype));
        Assert.True(DTypes.IsFixedSize(dtype));
        Assert.Equal(name, DTypes.GetName(dtype));
        Assert.True(DTypes.TryParse(name, out var parsed));
        Assert.Equal(dtype, parsed);
    }

    [Fact]
    public void DTypes_NonFixed_AreReported()
    {
        Assert.Equal(7, (int)DType.String);
        Assert.False(DTypes.IsFixedSize(DType.String));
        Assert.False(DTypes.IsFixedSize(DType.Variant));
        Assert.False(DTypes.IsFixedSize(DType.Resource));
        Assert.False(DTypes.IsFixedSize((DType)77));
        Assert.Throws<ArgumentException>(() => DTypes.GetElementSize(DType.String));
        Assert.True(DTypes.TryParse("half", out var h) && h == DType.Half);
        Assert.True(DTypes.TryParse("DT_INT64", out var i) && i == DType.Int64);
        Assert.False(DTypes.TryParse("float33", out _));
        Assert.Equal("dtype_77", DTypes.GetName((DType)77));
    }

    [Fact]
    public void TensorShape_Basics()
    {
        Assert.Equal("[]", TensorShape.Scalar.ToString());
        Assert.Equal(1, TensorShape.Scalar.ElementCount);
        Assert.Equal("[5, 30]", new TensorShape(5, 30).ToString());
        Assert.Equal(150, new TensorShape(5, 30).ElementCount);
        Assert.Equal(0, new TensorShape(0, long.MaxValue).ElementCount);
        Assert.Equal(new TensorShape(2, 3), new TensorShape([2L, 3L]));
        Assert.NotEqual(new TensorShape(2, 3), new TensorShape(3, 2));
        Assert.Equal(TensorShape.Scalar, new TensorShape());
        Assert.Throws<OverflowException>(() => new TensorShape(long.MaxValue, 2).ElementCount);
        Assert.Throws<ArgumentOutOfRangeException>(() => new TensorShape(-1));
    }

    [Fact]
    public void EncodeSliceKey_SpecExample()
    {
        // §3.4: name w, rank 2, dim 0 = 0..4, dim 1 whole → 00 | 77 00 01 | 01 02 | 80 85 | 80 7F
        var key = TensorSlice.EncodeSliceKey("w", new TensorSlice(new TensorSliceExtent(0, 5), TensorSliceExtent.Full));
        Assert.Equal(Convert.FromHexString("0077000101028085807F"), key);
        Assert.True(TensorSlice.TryDecodeSliceKey(key, out var name, out var slice));
        Assert.Equal("w"u8.ToArray(), name);
        Assert.Equal("0,5:-", slice!.ToString());
    }

    [Theory]
    [InlineData(0x424242L, "F0424242")]
    [InlineData(-0x800L, "3800")]
    [InlineData(0L, "80")]
    [InlineData(5L, "85")]
    [InlineData(-1L, "7F")]
    [InlineData(63L, "BF")]
    [InlineData(-64L, "40")]
    [InlineData(64L, "C040")]
    public void SignedNumIncreasing_SpecExamples(long value, string expectedHex)
    {
        // §3.4 (ordered_code.cc examples).
        var bytes = TensorSlice.EncodeSignedNumIncreasing(value);
        Assert.Equal(expectedHex, Convert.ToHexString(bytes));
        Assert.True(TensorSlice.TryDecodeSignedNumIncreasing(bytes, out var back));
        Assert.Equal(value, back);
    }

    [Fact]
    public void SignedNumIncreasing_Property_RoundTripsAndPreservesOrder()
    {
        PropertyCheck.ForAll<long, long, bool>((a, b, _) =>
        {
            var ea = TensorSlice.EncodeSignedNumIncreasing(a);
            var eb = TensorSlice.EncodeSignedNumIncreasing(b);
            var ok = TensorSlice.TryDecodeSignedNumIncreasing(ea, out var da) && da == a;
            return ok && Math.Sign(ea.AsSpan().SequenceCompareTo(eb)) == Math.Sign(a.CompareTo(b));
        }, 2000);
        foreach (var v in new[] { long.MinValue, long.MaxValue, 1L << 62, -(1L << 62), (1L << 55) - 1, 1L << 55 })
            Assert.True(TensorSlice.TryDecodeSignedNumIncreasing(TensorSlice.EncodeSignedNumIncreasing(v), out var d) && d == v);
    }

    [Fact]
    public void SliceKey_Property_DecodeInvertsEncodeAndOrderFollowsStart()
    {
        PropertyCheck.ForAll<FsCheck.NonNegativeInt, FsCheck.PositiveInt, string>((start, length, name) =>
        {
            name ??= "";
            var s1 = new TensorSlice(new TensorSliceExtent(start.Get, length.Get), TensorSliceExtent.Full);
            var k1 = TensorSlice.EncodeSliceKey(name, s1);
            var ok = TensorSlice.TryDecodeSliceKey(k1, out var n, out var back) && back!.Equals(s1)
                     && n.AsSpan().SequenceEqual(System.Text.Encoding.UTF8.GetBytes(name));
            var s2 = new TensorSlice(new TensorSliceExtent((long)start.Get + 1000, length.Get), TensorSliceExtent.Full);
            return ok && k1.AsSpan().SequenceCompareTo(TensorSlice.EncodeSliceKey(name, s2)) < 0;
        });
    }

    [Fact]
    public void CheckpointKeys_Escape()
    {
        Assert.Equal("a..b.Sc", CheckpointKeys.EscapeLocalName("a.b/c"));
        Assert.Equal("a.b/c", CheckpointKeys.UnescapeLocalName("a..b.Sc"));
        Assert.Equal("model/dense/.ATTRIBUTES/VARIABLE_VALUE", CheckpointKeys.AttributeKey("model/dense", CheckpointKeys.VariableValue));
        Assert.Equal("", CheckpointKeys.HeaderEntry);
        Assert.Equal("_CHECKPOINTABLE_OBJECT_GRAPH", CheckpointKeys.ObjectGraph);
    }

    [Fact]
    public void BundleNaming_Formats()
    {
        Assert.Equal("p.data-00000-of-00001", BundleNaming.DataFile("p", 0, 1));
        Assert.Equal("p.data-00003-of-00008", BundleNaming.DataFile("p", 3, 8));
        Assert.Equal("p.data-123456-of-200000", BundleNaming.DataFile("p", 123456, 200000));
        Assert.Equal("p.index", BundleNaming.IndexFile("p"));
        Assert.Throws<ArgumentOutOfRangeException>(() => BundleNaming.DataFile("p", 1, 1));
    }
}

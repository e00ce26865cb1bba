using System.Buffers.Binary;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;

namespace CheckpointGpu.Pipeline.Tests;

/// <summary>
/// Saves of partitioned tensors (<see cref="SaveItem.Slice"/>) through <see cref="CheckpointPipeline.SaveAsync"/>: byte
/// identity with <see cref="TensorBundleWriter.AddSlice"/>/<see cref="TensorBundleWriter.Add(string, DType, TensorShape, ReadOnlySpan{byte}, int)"/>
/// given the same calls in the same order, and read-back through <see cref="TensorBundleReader.ReadSlice(string, TensorSlice, Span{byte})"/>.
/// </summary>
public sealed class PartitionedSaveTests
{
    private static TensorSliceExtent X(long start, long length) => new(start, length);

    private static TensorSliceExtent Whole => TensorSliceExtent.Full;

    /// <summary>One call: a whole float tensor (Slice null) or one slice of it, in data order.</summary>
    private sealed record Call(string Key, TensorShape FullShape, TensorSlice? Slice, int Shard = 0);

    private sealed record Layout(int ShardCount, int SlotSizeInBytes, int SlotCount, Call[] Calls);

    private static Layout GetLayout(string name) => name switch
    {
        // A [6,5] tensor in two row blocks, next to a whole tensor.
        "rows-2" => new Layout(1, 4096, 4,
        [
            new("dense/kernel", new TensorShape(6, 5), new TensorSlice(X(0, 3), Whole)),
            new("dense/bias", new TensorShape(7), null),
            new("dense/kernel", new TensorShape(6, 5), new TensorSlice(X(3, 3), Whole)),
        ]),
        // A [7,3] tensor in three uneven row blocks, stored out of order.
        "rows-3" => new Layout(1, 4096, 4,
        [
            new("emb", new TensorShape(7, 3), new TensorSlice(X(4, 3), Whole)),
            new("emb", new TensorShape(7, 3), new TensorSlice(X(0, 2), Whole)),
            new("emb", new TensorShape(7, 3), new TensorSlice(X(2, 2), X(0, 3))),
        ]),
        // A [4,6] tensor in two column blocks (not contiguous in the full tensor); dim 0 once whole, once explicit.
        "cols-2" => new Layout(1, 4096, 4,
        [
            new("proj", new TensorShape(4, 6), new TensorSlice(Whole, X(0, 2))),
            new("proj", new TensorShape(4, 6), new TensorSlice(X(0, 4), X(2, 4))),
        ]),
        // Slices covering the whole tensor are ordinary entries; one partitioned tensor beside them.
        "covering" => new Layout(1, 4096, 4,
        [
            new("a", new TensorShape(3, 4), TensorSlice.Full(2)),
            new("b", new TensorShape(2, 5), new TensorSlice(X(0, 2), X(0, 5))),
            new("c", new TensorShape(5, 2), new TensorSlice(X(0, 1), Whole)),
            new("c", new TensorShape(5, 2), new TensorSlice(X(1, 4), Whole)),
        ]),
        // Whole tensors and two partitioned tensors interleaved over two shards.
        "mixed-2-shards" => new Layout(2, 4096, 3,
        [
            new("w1", new TensorShape(10, 4), new TensorSlice(X(0, 5), Whole), 0),
            new("scalar", TensorShape.Scalar, null, 1),
            new("w2", new TensorShape(3, 8), new TensorSlice(Whole, X(4, 4)), 1),
            new("v", new TensorShape(33), null, 0),
            new("w1", new TensorShape(10, 4), new TensorSlice(X(5, 5), Whole), 1),
            new("w2", new TensorShape(3, 8), new TensorSlice(Whole, X(0, 4)), 0),
            new("u", new TensorShape(2, 2), null, 1),
        ]),
        // Every slice (7200 and 4800 bytes) is larger than a 4096-byte slot, and the ring holds two slots.
        "ring-smaller-than-slice" => new Layout(1, 4096, 2,
        [
            new("big", new TensorShape(1000, 3), new TensorSlice(X(400, 600), Whole)),
            new("small", new TensorShape(5), null),
            new("big", new TensorShape(1000, 3), new TensorSlice(X(0, 400), Whole)),
        ]),
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, null),
    };

    private static readonly string[] LayoutNames = ["rows-2", "rows-3", "cols-2", "covering", "mixed-2-shards", "ring-smaller-than-slice"];

    public static TheoryData<AcceleratorKind, string> ByteIdentityCases()
    {
        var data = new TheoryData<AcceleratorKind, string>();
        foreach (var name in LayoutNames) data.Add(AcceleratorKind.Cpu, name);
        foreach (var k in Backends.KindList.Where(k => k != AcceleratorKind.Cpu)) data.Add(k, "mixed-2-shards");
        return data;
    }

    public static TheoryData<string> Layouts()
    {
        var data = new TheoryData<string>();
        foreach (var name in LayoutNames) data.Add(name);
        return data;
    }

    [Theory]
    [MemberData(nameof(ByteIdentityCases))]
    public async Task SaveAsync_PartitionedLayout_ByteIdenticalToTensorBundleWriterAddSlice(AcceleratorKind kind, string layoutName)
    {
        var layout = GetLayout(layoutName);
        using var dir = new TempDir();
        using var acc = Accelerator.Create(kind);
        using var model = new SlicedModel(acc, layout.Calls);
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions
        { SlotSizeInBytes = layout.SlotSizeInBytes, SlotCount = layout.SlotCount });
        var prefix = dir.Prefix("ckpt");
        var plan = SavePlan.Create(model.Items(), layout.ShardCount);
        var handle = pipeline.QueueSave(prefix, plan);
        await handle.Completion;

        IReadOnlyList<BundleEntry> referenceEntries;
        using (var w = new TensorBundleWriter(dir.Prefix("reference"), new TensorBundleWriterOptions { ShardCount = layout.ShardCount }))
        {
            foreach (var call in layout.Calls)
            {
                if (call.Slice is null) w.Add(call.Key, DType.Float, call.FullShape, model.FullBytes(call.Key), call.Shard);
                else w.AddSlice(call.Key, call.FullShape, call.Slice, DType.Float, Expected.SliceBytes(model.FullValues(call.Key), call.FullShape, call.Slice), call.Shard);
            }
            referenceEntries = [.. w.Entries];
            w.Finish();
        }

        Files.AssertSameBundle(dir.Prefix("reference"), prefix, layout.ShardCount);
        Assert.Equal(plan.EntryCount, handle.Entries!.Count);
        Assert.Equal(SortByKeyBytes(referenceEntries), SortByKeyBytes(handle.Entries));
        Assert.Empty(Files.Leftovers(dir.Path));
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public async Task SaveAsync_PartitionedLayout_ReadsBackToOriginalValues(string layoutName)
    {
        var layout = GetLayout(layoutName);
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new SlicedModel(acc, layout.Calls);
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions
        { SlotSizeInBytes = layout.SlotSizeInBytes, SlotCount = layout.SlotCount });
        var prefix = dir.Prefix("ckpt");
        await pipeline.QueueSave(prefix, SavePlan.Create(model.Items(), layout.ShardCount)).Completion;

        using var r = TensorBundleReader.Open(prefix);
        foreach (var e in r.Entries) r.VerifyEntry(e);
        foreach (var key in layout.Calls.Select(c => c.Key).Distinct())
        {
            var call = layout.Calls.First(c => c.Key == key);
            var shape = call.FullShape;
            var full = model.FullValues(key);
            var partitioned = layout.Calls.Count(c => c.Key == key && c.Slice is not null && !c.Slice.CoversWhole(shape)) > 0;
            Assert.Equal(partitioned, r.GetEntry(key).IsPartitioned);

            // The whole tensor, assembled from its slices.
            var got = new byte[full.Length * sizeof(float)];
            r.ReadSlice(key, TensorSlice.Full(shape.Rank), got);
            Assert.Equal(Expected.Bytes(full), got);

            // Each stored slice, and a region straddling the slices (one element in from each border).
            var regions = layout.Calls.Where(c => c.Key == key && c.Slice is not null).Select(c => c.Slice!).ToList();
            if (shape.Rank == 2 && shape[0] > 2 && shape[1] > 2)
                regions.Add(new TensorSlice(X(1, shape[0] - 2), X(1, shape[1] - 2)));
            foreach (var region in regions)
            {
                var expected = Expected.SliceBytes(full, shape, region);
                var buffer = new byte[expected.Length];
                r.ReadSlice(key, region, buffer);
                Assert.True(expected.AsSpan().SequenceEqual(buffer), $"'{key}' region {region} differs from the input.");
            }
        }
    }

    [Fact]
    public async Task SaveAsync_SlicesOfOneBuffer_BarrierWaitsForEverySlice()
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        var calls = GetLayout("ring-smaller-than-slice").Calls;
        using var model = new SlicedModel(acc, calls);
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 4096, SlotCount = 2 });
        var handle = pipeline.QueueSave(dir.Prefix("ckpt"), SavePlan.Create(model.Items()));
        await pipeline.WaitUntilStagedAsync(model.Buffer("big"));
        Assert.True(handle.IsStaged(0));
        Assert.True(handle.IsStaged(2));
        await handle.Completion;
    }

    private static List<BundleEntry> SortByKeyBytes(IEnumerable<BundleEntry> entries)
    {
        var list = entries.ToList();
        list.Sort((a, b) => a.KeyUtf8.Span.SequenceCompareTo(b.KeyUtf8.Span));
        return list;
    }

    /// <summary>
    /// Float tensors on the device, one buffer per key holding the full tensor. A slice that is a contiguous row block is saved
    /// from a sub-view of that buffer (the usual partitioned variable); any other slice from its own buffer.
    /// </summary>
    private sealed class SlicedModel : IDisposable
    {
        private readonly Accelerator _acc;
        private readonly Call[] _calls;
        private readonly Dictionary<string, float[]> _values = new(StringComparer.Ordinal);
        private readonly Dictionary<string, DeviceBuffer> _full = new(StringComparer.Ordinal);
        private readonly List<DeviceBuffer> _buffers = [];

        public SlicedModel(Accelerator acc, Call[] calls)
        {
            _acc = acc;
            _calls = calls;
            var id = 0;
            foreach (var call in calls)
            {
                if (_values.ContainsKey(call.Key)) continue;
                var n = call.FullShape.ElementCount;
                var values = new float[n];
                for (var i = 0; i < n; i++) values[i] = id * 1000 + i + 0.25f;
                id++;
                _values[call.Key] = values;
                var buffer = acc.Allocate(n * sizeof(float));
                _buffers.Add(buffer);
                Data.Upload(acc, buffer, Expected.Bytes(values));
                _full[call.Key] = buffer;
            }
        }

        public float[] FullValues(string key) => _values[key];

        public byte[] FullBytes(string key) => Expected.Bytes(_values[key]);

        public DeviceBuffer Buffer(string key) => _full[key];

        public List<SaveItem> Items()
        {
            var items = new List<SaveItem>();
            foreach (var call in _calls)
            {
                var full = _full[call.Key];
                if (call.Slice is null)
                {
                    items.Add(new SaveItem(call.Key, DType.Float, call.FullShape, SaveSource.FromDevice(full.AsView()), call.Shard));
                    continue;
                }
                var bytes = Expected.SliceBytes(_values[call.Key], call.FullShape, call.Slice);
                DeviceView view;
                if (TryRowBlock(call.FullShape, call.Slice, out var firstRow))
                {
                    var rowBytes = call.FullShape.Rank == 0 ? 0 : call.FullShape.ElementCount / call.FullShape[0] * sizeof(float);
                    view = full.AsView().SubView(firstRow * rowBytes, bytes.Length);
                }
                else
                {
                    var own = _acc.Allocate(bytes.Length);
                    _buffers.Add(own);
                    Data.Upload(_acc, own, bytes);
                    view = own.AsView();
                }
                items.Add(SaveItem.ForSlice(call.Key, DType.Float, call.FullShape, call.Slice, SaveSource.FromDevice(view), call.Shard));
            }
            return items;
        }

        /// <summary>True when the slice is rows [firstRow, …) with every later dimension whole: contiguous in the full tensor.</summary>
        private static bool TryRowBlock(TensorShape shape, TensorSlice slice, out long firstRow)
        {
            firstRow = slice.Extents[0].IsFull ? 0 : slice.Extents[0].Start;
            for (var d = 1; d < shape.Rank; d++)
            {
                var e = slice.Extents[d];
                if (!e.IsFull && !(e.Start == 0 && e.Length == shape[d])) return false;
            }
            return true;
        }

        public void Dispose()
        {
            foreach (var b in _buffers) b.Dispose();
        }
    }

    /// <summary>Expected bytes computed from the input arrays by plain index arithmetic (independent of Format and Pipeline).</summary>
    private static class Expected
    {
        public static byte[] Bytes(float[] values)
        {
            var b = new byte[values.Length * sizeof(float)];
            for (var i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(b.AsSpan(i * sizeof(float)), values[i]);
            return b;
        }

        /// <summary>The elements of <paramref name="slice"/> of a row-major tensor, row-major within the slice.</summary>
        public static byte[] SliceBytes(float[] full, TensorShape shape, TensorSlice slice)
        {
            var rank = shape.Rank;
            var start = new long[rank];
            var length = new long[rank];
            var stride = new long[rank];
            long count = 1;
            for (var d = rank - 1; d >= 0; d--)
            {
                var e = slice.Extents[d];
                start[d] = e.IsFull ? 0 : e.Start;
                length[d] = e.IsFull ? shape[d] : e.Length;
                stride[d] = d == rank - 1 ? 1 : stride[d + 1] * shape[d + 1];
                count *= length[d];
            }
            var values = new float[count];
            var index = new long[rank];
            for (long k = 0; k < count; k++)
            {
                long flat = 0;
                for (var d = 0; d < rank; d++) flat += (start[d] + index[d]) * stride[d];
                values[k] = full[flat];
                for (var d = rank - 1; d >= 0; d--)
                {
                    if (++index[d] < length[d]) break;
                    index[d] = 0;
                }
            }
            return Bytes(values);
        }
    }
}

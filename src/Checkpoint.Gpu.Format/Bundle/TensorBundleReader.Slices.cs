namespace CheckpointGpu.Format;

public sealed partial class TensorBundleReader
{
    /// <summary>
    /// The slices stored for <paramref name="key"/>: the full entry's <c>slices</c> list for a partitioned tensor, or one
    /// full slice for an ordinary entry (which TF also treats as a slice covering everything).
    /// </summary>
    /// <param name="key">Key of the full tensor.</param>
    /// <returns>Stored slices in index order.</returns>
    /// <exception cref="KeyNotFoundException">The key is not in the bundle.</exception>
    public IReadOnlyList<TensorSlice> GetStoredSlices(string key)
    {
        var entry = GetEntry(key);
        return entry.IsPartitioned ? entry.Slices : [TensorSlice.Full(entry.Shape.Rank)];
    }

    /// <summary>
    /// True when the stored slices of <paramref name="key"/> cover <paramref name="slice"/> completely, i.e. when
    /// <see cref="ReadSlice(string, TensorSlice, Span{byte})"/> would succeed (TF's <c>TensorSliceSet::QueryMeta</c>).
    /// </summary>
    /// <param name="key">Key of the full tensor.</param>
    /// <param name="slice">Requested region (same rank as the full tensor).</param>
    /// <exception cref="KeyNotFoundException">The key is not in the bundle.</exception>
    /// <exception cref="ArgumentException">The slice does not fit the tensor's shape.</exception>
    /// <exception cref="CheckpointFormatException">The stored slices are malformed or overlap.</exception>
    public bool HasSufficientSlices(string key, TensorSlice slice)
    {
        ArgumentNullException.ThrowIfNull(slice);
        var entry = GetEntry(key);
        var target = Bounds(slice, entry.Shape, nameof(slice));
        var stored = StoredBounds(entry);
        return CoveredElements(stored, target) == Volume(target);
    }

    /// <summary>
    /// Reads any rectangular region of a tensor (TF's <c>BundleReader::LookupSlice</c>; spec section 3.4): for a
    /// partitioned tensor, the stored slices that intersect the region are read through their encoded slice keys
    /// (each verified against its CRC32C) and their intersections copied into place; an ordinary entry is read as one
    /// slice covering the whole tensor.
    /// </summary>
    /// <param name="key">Key of the full tensor (e.g. <c>model/emb/.ATTRIBUTES/VARIABLE_VALUE</c>).</param>
    /// <param name="slice">Region to read, in full-tensor coordinates, same rank as the full shape.</param>
    /// <param name="destination">Receives the region's elements, row-major within the region, host byte order;
    /// length must be the region's element count × element size.</param>
    /// <exception cref="KeyNotFoundException">The key is not in the bundle.</exception>
    /// <exception cref="ArgumentException">The dtype is not fixed-size, the slice does not fit the shape, or the destination length is wrong.</exception>
    /// <exception cref="CheckpointFormatException">The stored slices do not cover the region
    /// (<see cref="CheckpointFormatError.InvalidSlice"/>, TF: "does not have sufficient slices"), overlap, a slice entry is
    /// missing or inconsistent, or a payload is corrupt.</exception>
    /// <exception cref="FileNotFoundException">A data file is missing.</exception>
    public unsafe void ReadSlice(string key, TensorSlice slice, Span<byte> destination)
    {
        fixed (byte* p = destination) ReadSlice(key, slice, (nint)p, destination.Length);
    }

    /// <summary>
    /// Reads any rectangular region of a tensor into native memory (e.g. pinned host memory); see
    /// <see cref="ReadSlice(string, TensorSlice, Span{byte})"/>. Host memory use is bounded by the read chunk (4 MiB)
    /// plus 24 bytes per contiguous run of the region.
    /// </summary>
    /// <param name="key">Key of the full tensor.</param>
    /// <param name="slice">Region to read.</param>
    /// <param name="destination">Start of <paramref name="lengthInBytes"/> writable bytes; not retained.</param>
    /// <param name="lengthInBytes">The region's size in bytes.</param>
    /// <exception cref="KeyNotFoundException">The key is not in the bundle.</exception>
    /// <exception cref="ArgumentException">Wrong dtype kind, slice or length; null destination.</exception>
    /// <exception cref="CheckpointFormatException">Insufficient, overlapping or inconsistent slices, or corrupt payloads.</exception>
    /// <exception cref="FileNotFoundException">A data file is missing.</exception>
    public unsafe void ReadSlice(string key, TensorSlice slice, nint destination, long lengthInBytes)
    {
        ArgumentNullException.ThrowIfNull(slice);
        var entry = GetEntry(key);
        if (!DTypes.IsFixedSize(entry.DType))
            throw new ArgumentException($"'{key}' is {DTypes.GetName(entry.DType)}; only fixed-size tensors can be read by slice.", nameof(key));
        var width = DTypes.GetElementSize(entry.DType);
        var target = Bounds(slice, entry.Shape, nameof(slice));
        var targetElements = Volume(target);
        if (targetElements > long.MaxValue / width || targetElements * width != lengthInBytes)
            throw new ArgumentException($"Region {slice} of '{key}' ({DTypes.GetName(entry.DType)}) needs {(targetElements <= long.MaxValue / width ? targetElements * width : -1)} bytes, destination has {lengthInBytes}.", nameof(lengthInBytes));
        if (destination == 0 && lengthInBytes > 0) throw new ArgumentException("Destination pointer is null.", nameof(destination));
        var stored = StoredBounds(entry);
        if (CoveredElements(stored, target) != targetElements)
            ThrowHelper.Format(CheckpointFormatError.InvalidSlice, IndexPath,
                $"does not have sufficient slices for partitioned tensor to restore in slice_spec '{slice.ToSpecString(entry.Shape)}'", key,
                comparison: $"stored slices: {string.Join(", ", (entry.IsPartitioned ? entry.Slices : [TensorSlice.Full(entry.Shape.Rank)]).Select(s => s.ToString().Length == 0 ? "(scalar)" : s.ToString()))}");
        if (lengthInBytes == 0) return;

        for (var i = 0; i < stored.Count; i++)
        {
            var (storedSlice, storedBounds) = stored[i];
            if (!TryIntersect(storedBounds, target, out var inter)) continue;
            var sliceEntry = entry.IsPartitioned ? FindSliceEntry(entry, storedSlice) : entry;
            var runs = Runs(storedBounds, target, inter, width);
            var run = 0;
            var dst = (byte*)destination;
            ReadTensor(sliceEntry, (chunk, offsetInTensor) =>
            {
                var chunkEnd = offsetInTensor + chunk.Length;
                while (run < runs.Count)
                {
                    var (src, dstOffset, len) = runs[run];
                    if (src >= chunkEnd) break;
                    var from = Math.Max(src, offsetInTensor);
                    var to = Math.Min(src + len, chunkEnd);
                    if (to > from)
                        chunk.Slice((int)(from - offsetInTensor), (int)(to - from)).CopyTo(new Span<byte>(dst + dstOffset + (from - src), (int)(to - from)));
                    if (src + len > chunkEnd) break;   // the run continues in the next chunk
                    run++;
                }
            });
        }
    }

    /// <summary>Finds and checks the slice entry stored for one slice of a partitioned tensor.</summary>
    private BundleEntry FindSliceEntry(BundleEntry full, TensorSlice slice)
    {
        var keyBytes = TensorSlice.EncodeSliceKey(full.GetKeyBytes(), slice);
        if (!_byKey.TryGetValue(CheckpointKeys.ToDisplay(keyBytes), out var sliceEntry) || !sliceEntry.GetKeyBytes().AsSpan().SequenceEqual(keyBytes))
            return ThrowHelper.Format<BundleEntry>(CheckpointFormatError.InvalidSlice, IndexPath,
                "partitioned tensor lists a slice whose slice entry is missing", full.Key, comparison: $"slice {slice}");
        var shape = slice.GetSliceShape(full.Shape);
        if (sliceEntry.DType != full.DType || sliceEntry.Shape != shape || sliceEntry.IsPartitioned)
            ThrowHelper.Format(CheckpointFormatError.InvalidSlice, IndexPath, "slice entry disagrees with its partitioned tensor", sliceEntry.Key,
                comparison: $"expected {DTypes.GetName(full.DType)} {shape}, found {DTypes.GetName(sliceEntry.DType)} {sliceEntry.Shape}");
        return sliceEntry;
    }

    /// <summary>Per-dimension [start, end) of a slice within <paramref name="shape"/>.</summary>
    private static (long Start, long End)[] Bounds(TensorSlice slice, TensorShape shape, string paramName)
    {
        if (slice.Rank != shape.Rank) throw new ArgumentException($"Slice rank {slice.Rank} differs from the tensor's rank {shape.Rank}.", paramName);
        var b = new (long, long)[shape.Rank];
        for (var d = 0; d < b.Length; d++)
        {
            var e = slice.Extents[d];
            if (e.IsFull) { b[d] = (0, shape[d]); continue; }
            if (e.Start > shape[d] - e.Length) throw new ArgumentException($"Slice extent {e} exceeds dimension {d} of size {shape[d]}.", paramName);
            b[d] = (e.Start, e.Start + e.Length);
        }
        return b;
    }

    /// <summary>Stored slices with bounds, validated like TF's <c>TensorSliceSet::Register</c> (in range, no overlap).</summary>
    private List<(TensorSlice Slice, (long Start, long End)[] Bounds)> StoredBounds(BundleEntry entry)
    {
        var list = new List<(TensorSlice, (long, long)[])>();
        foreach (var s in entry.IsPartitioned ? entry.Slices : [TensorSlice.Full(entry.Shape.Rank)])
        {
            (long, long)[] b;
            try
            {
                b = Bounds(s, entry.Shape, nameof(entry));
            }
            catch (ArgumentException ex)
            {
                return ThrowHelper.Format<List<(TensorSlice, (long, long)[])>>(CheckpointFormatError.InvalidSlice, IndexPath,
                    "stored slice does not fit the tensor's shape", entry.Key, comparison: ex.Message, inner: ex);
            }
            foreach (var (other, ob) in list)
                if (TryIntersect(ob, b, out _))
                    ThrowHelper.Format(CheckpointFormatError.InvalidSlice, IndexPath, "stored slices overlap", entry.Key, comparison: $"{other} and {s}");
            list.Add((s, b));
        }
        return list;
    }

    private static long Volume((long Start, long End)[] b)
    {
        long v = 1;
        foreach (var (s, e) in b) v = checked(v * (e - s));
        return v;
    }

    private static bool TryIntersect((long Start, long End)[] a, (long Start, long End)[] b, out (long Start, long End)[] result)
    {
        result = new (long, long)[a.Length];
        for (var d = 0; d < a.Length; d++)
        {
            var s = Math.Max(a[d].Start, b[d].Start);
            var e = Math.Min(a[d].End, b[d].End);
            if (e <= s) return false;
            result[d] = (s, e);
        }
        return true;
    }

    private static long CoveredElements(List<(TensorSlice Slice, (long Start, long End)[] Bounds)> stored, (long Start, long End)[] target)
    {
        long covered = 0;
        foreach (var (_, b) in stored)
            if (TryIntersect(b, target, out var inter)) covered += Volume(inter);
        return covered;
    }

    /// <summary>
    /// Contiguous byte runs (offset in the stored slice, offset in the region, length) of the intersection, in increasing
    /// source order. Trailing dimensions that the intersection covers entirely in both the stored slice and the region
    /// are merged into one run.
    /// </summary>
    private static List<(long Src, long Dst, long Len)> Runs((long Start, long End)[] source, (long Start, long End)[] target,
        (long Start, long End)[] inter, int width)
    {
        var rank = inter.Length;
        var runs = new List<(long, long, long)>();
        if (rank == 0)
        {
            runs.Add((0, 0, width));
            return runs;
        }
        var srcStride = new long[rank];
        var dstStride = new long[rank];
        long ss = width, ds = width;
        for (var d = rank - 1; d >= 0; d--)
        {
            srcStride[d] = ss;
            dstStride[d] = ds;
            ss *= source[d].End - source[d].Start;
            ds *= target[d].End - target[d].Start;
        }
        // Collapse trailing dimensions that are whole in source, target and intersection.
        var inner = rank - 1;
        var runLen = (inter[inner].End - inter[inner].Start) * width;
        while (inner > 0 && inter[inner] == source[inner] && inter[inner] == target[inner])
        {
            inner--;
            runLen *= inter[inner].End - inter[inner].Start;
        }
        var idx = new long[inner];
        for (var d = 0; d < inner; d++) idx[d] = inter[d].Start;
        while (true)
        {
            long src = (inter[inner].Start - source[inner].Start) * srcStride[inner];
            long dst = (inter[inner].Start - target[inner].Start) * dstStride[inner];
            for (var d = 0; d < inner; d++)
            {
                src += (idx[d] - source[d].Start) * srcStride[d];
                dst += (idx[d] - target[d].Start) * dstStride[d];
            }
            runs.Add((src, dst, runLen));
            var k = inner - 1;
            while (k >= 0)
            {
                if (++idx[k] < inter[k].End) break;
                idx[k] = inter[k].Start;
                k--;
            }
            if (k < 0) break;
        }
        return runs;
    }
}

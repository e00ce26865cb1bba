using System.Text;
using CheckpointGpu.Format;

namespace CheckpointGpu.Pipeline;

/// <summary>
/// Where every byte of a save goes, computed before any byte moves: per shard, the tensors in the given order,
/// packed back to back from offset 0 with no padding (TensorFlow's layout, spec §4.1), so the data files stay
/// TensorFlow-readable and the <c>.index</c> follows from the plan plus the checksums the pipeline reports.
/// </summary>
/// <remarks>
/// <para>Slices of partitioned tensors (<see cref="SaveItem.Slice"/>) are planned as TensorFlow's
/// <c>BundleWriter::AddSlice</c> (<c>tensorflow/core/util/tensor_bundle/tensor_bundle.cc</c>; spec §3.4) stores them: each
/// slice is one payload under its encoded slice key, and <see cref="ToEntries"/> adds one payload-less entry per
/// partitioned key listing its slices. A plan and the same calls to <see cref="TensorBundleWriter.Add(string, DType, TensorShape, ReadOnlySpan{byte}, int)"/>
/// / <see cref="TensorBundleWriter.AddSlice"/> in plan order give byte-identical files.</para>
/// <para>Immutable and thread-safe once created. A plan may be reused for many saves of the same tensors (the
/// sources are read anew each time).</para>
/// </remarks>
public sealed class SavePlan
{
    private readonly long[] _shardSizes;
    private readonly PlannedTensor[][] _byShard;
    private readonly byte[][] _entryKeys;
    private readonly Partition[] _partitions;

    private SavePlan(int shardCount, PlannedTensor[] tensors, long[] shardSizes, PlannedTensor[][] byShard, byte[][] entryKeys, Partition[] partitions)
    {
        ShardCount = shardCount;
        Tensors = tensors;
        _shardSizes = shardSizes;
        _byShard = byShard;
        _entryKeys = entryKeys;
        _partitions = partitions;
        TotalBytes = shardSizes.Sum();
        Header = new BundleHeader(shardCount, BundleEndianness.Little, BundleHeader.CurrentVersion, 0, Array.Empty<int>());
    }

    /// <summary>Number of data files.</summary>
    public int ShardCount { get; }

    /// <summary>The payloads (whole tensors and slices) in the order given to <see cref="Create"/>, with offsets and sizes.</summary>
    public IReadOnlyList<PlannedTensor> Tensors { get; }

    /// <summary>Size of each data file in bytes.</summary>
    public IReadOnlyList<long> ShardSizes => _shardSizes;

    /// <summary>Sum of all shard sizes, in bytes.</summary>
    public long TotalBytes { get; }

    /// <summary>The header of the bundle (little-endian, producer 1, the plan's shard count).</summary>
    public BundleHeader Header { get; }

    /// <summary>
    /// Number of index entries <see cref="ToEntries"/> returns (header excluded): one per payload in <see cref="Tensors"/> plus one
    /// full-tensor entry per partitioned key.
    /// </summary>
    public int EntryCount => Tensors.Count + _partitions.Length;

    /// <summary>The tensors of one shard in file order.</summary>
    /// <param name="shardId">0 ≤ id &lt; <see cref="ShardCount"/>.</param>
    /// <returns>The tensors, by increasing offset.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="shardId"/> is out of range.</exception>
    public IReadOnlyList<PlannedTensor> GetShardTensors(int shardId)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(shardId);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(shardId, ShardCount);
        return _byShard[shardId];
    }

    /// <summary>Plans <paramref name="items"/>: within each shard, payloads follow the order of <paramref name="items"/>.</summary>
    /// <param name="items">The tensors and slices, in data order (TF object-based saves put the object graph last). Whole tensors are
    /// unique by key; slice items (<see cref="SaveItem.Slice"/>) are unique by (full key, slice), and all slices of one key agree on
    /// dtype and full shape. A slice covering the whole tensor counts as the whole tensor.</param>
    /// <param name="shardCount">Number of data files, ≥ 1. Every shard file is created, even if empty.</param>
    /// <returns>The plan.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="items"/> or an item is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="shardCount"/> &lt; 1, or an item's shard id is out of range.</exception>
    /// <exception cref="ArgumentException">Empty or duplicate key; the same slice twice; a key used both for a whole tensor and for
    /// slices; slices of one key with different dtypes or full shapes; a slice whose rank differs from the full shape's or that lies
    /// outside it; a slice of a dtype that is not fixed-size; a dtype that cannot be stored (resource, invalid); a fixed-size dtype
    /// with an encoded source or a size that differs from elements (of the slice, for a slice item) × width; a string/variant dtype
    /// without an encoded source; two entries with the same table key bytes.</exception>
    public static SavePlan Create(IReadOnlyList<SaveItem> items, int shardCount = 1)
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentOutOfRangeException.ThrowIfLessThan(shardCount, 1);
        var wholeKeys = new Dictionary<string, int>(items.Count, StringComparer.Ordinal);  // key → item index
        var partitions = new Dictionary<string, Partition>(StringComparer.Ordinal);
        var partitionOrder = new List<Partition>();
        // Every table key, as bytes: distinct strings can share UTF-8 bytes (lone surrogates), and slice keys are not UTF-8.
        var tableKeys = new HashSet<byte[]>(ByteArrayComparer.Instance);
        var tensors = new PlannedTensor[items.Count];
        var entryKeys = new byte[items.Count][];
        var sizes = new long[shardCount];
        var byShard = new List<PlannedTensor>[shardCount];
        for (var s = 0; s < shardCount; s++) byShard[s] = [];
        for (var i = 0; i < items.Count; i++)
        {
            var item = items[i];
            ArgumentNullException.ThrowIfNull(item, nameof(items));
            ArgumentNullException.ThrowIfNull(item.Source, nameof(items));
            if (string.IsNullOrEmpty(item.Key)) throw new ArgumentException($"Item {i} has an empty key (reserved for the bundle header).", nameof(items));
            if (item.ShardId < 0 || item.ShardId >= shardCount)
                throw new ArgumentOutOfRangeException(nameof(items), $"Item '{item.Key}' has shard id {item.ShardId}, outside [0, {shardCount}).");
            CheckItem(item, nameof(items));
            var size = item.Source.LengthInBytes;
            var planned = new PlannedTensor(i, item, sizes[item.ShardId], size);
            var entryKey = planned.EntryKeyBytes();
            if (planned.IsSliceEntry)
            {
                var slice = item.Slice!;
                if (wholeKeys.TryGetValue(item.Key, out var whole))
                    throw new ArgumentException($"Key '{item.Key}' is saved whole (item {whole}) and partitioned: item {i} holds its slice {slice}.", nameof(items));
                if (partitions.TryGetValue(item.Key, out var p))
                {
                    if (p.DType != item.DType || p.FullShape != item.Shape)
                        throw new ArgumentException($"Slice {slice} of '{item.Key}' (item {i}) disagrees with the key's earlier slices: expected " +
                            $"{DTypes.GetName(p.DType)} {p.FullShape}, found {DTypes.GetName(item.DType)} {item.Shape}.", nameof(items));
                    if (!p.SliceSet.Add(slice))
                        throw new ArgumentException($"Duplicate slice {slice} of '{item.Key}' (item {i}).", nameof(items));
                }
                else
                {
                    p = new Partition(item.Key, item.DType, item.Shape);
                    p.SliceSet.Add(slice);
                    if (!tableKeys.Add(Encoding.UTF8.GetBytes(item.Key)))
                        throw new ArgumentException($"Key '{item.Key}' of partitioned tensor (item {i}) has the same table key bytes as an earlier entry.", nameof(items));
                    partitions.Add(item.Key, p);
                    partitionOrder.Add(p);
                }
                p.Slices.Add(slice);
            }
            else
            {
                if (partitions.ContainsKey(item.Key))
                    throw new ArgumentException($"Key '{item.Key}' is partitioned into slices and saved whole (item {i}).", nameof(items));
                if (!wholeKeys.TryAdd(item.Key, i)) throw new ArgumentException($"Duplicate key '{item.Key}' (item {i}).", nameof(items));
            }
            if (!tableKeys.Add(entryKey))
                throw new ArgumentException($"Entry '{planned.EntryKey}' (item {i}) has the same table key bytes as an earlier entry.", nameof(items));
            sizes[item.ShardId] = checked(sizes[item.ShardId] + size);
            tensors[i] = planned;
            entryKeys[i] = entryKey;
            byShard[item.ShardId].Add(planned);
        }
        return new SavePlan(shardCount, tensors, sizes, byShard.Select(l => l.ToArray()).ToArray(), entryKeys, [.. partitionOrder]);
    }

    /// <summary>
    /// The index entries of this plan given each payload's masked CRC32C, as <see cref="TensorBundleWriter"/> records them
    /// (<c>BundleWriter::Add</c>/<c>AddSlice</c>, <c>tensorflow/core/util/tensor_bundle/tensor_bundle.cc</c>; spec §3.4).
    /// </summary>
    /// <param name="maskedCrc32C">One masked CRC per payload, indexed like <see cref="Tensors"/>.</param>
    /// <returns>
    /// <see cref="EntryCount"/> entries: first one per payload in plan order (a slice entry has the encoded slice key in
    /// <see cref="BundleEntry.KeyUtf8"/>, its display form in <see cref="BundleEntry.Key"/>, and the slice's shape), then one
    /// full-tensor entry per partitioned key in order of first appearance (dtype, full shape, shard 0, offset 0, size 0, CRC 0,
    /// its slices in plan order). Unsorted: the index writer sorts by key bytes.
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="maskedCrc32C"/> is null.</exception>
    /// <exception cref="ArgumentException">The CRC count differs from the payload count.</exception>
    public IReadOnlyList<BundleEntry> ToEntries(IReadOnlyList<uint> maskedCrc32C)
    {
        ArgumentNullException.ThrowIfNull(maskedCrc32C);
        if (maskedCrc32C.Count != Tensors.Count)
            throw new ArgumentException($"Expected {Tensors.Count} checksums, got {maskedCrc32C.Count}.", nameof(maskedCrc32C));
        var entries = new BundleEntry[EntryCount];
        for (var i = 0; i < Tensors.Count; i++)
        {
            var t = Tensors[i];
            entries[i] = t.IsSliceEntry
                ? new BundleEntry(CheckpointKeys.ToDisplay(_entryKeys[i]), t.Item.DType, t.EntryShape, t.ShardId, t.Offset, t.Size, maskedCrc32C[i]) { KeyUtf8 = _entryKeys[i] }
                : new BundleEntry(t.Key, t.Item.DType, t.Item.Shape, t.ShardId, t.Offset, t.Size, maskedCrc32C[i]);
        }
        for (var p = 0; p < _partitions.Length; p++)
        {
            var part = _partitions[p];
            entries[Tensors.Count + p] = new BundleEntry(part.Key, part.DType, part.FullShape, 0, 0, 0, 0, part.Slices.ToArray());
        }
        return entries;
    }

    /// <summary>Checks one item's dtype, source kind, slice and size (everything that does not depend on the other items).</summary>
    internal static void CheckItem(SaveItem item, string paramName)
    {
        var dtype = item.DType;
        var shape = item.Shape;
        if (item.Slice is { } slice)
        {
            if (!DTypes.IsFixedSize(dtype))
                throw new ArgumentException($"'{item.Key}': only fixed-size dtypes can be saved as slices; {DTypes.GetName(dtype)} cannot.", paramName);
            if (slice.Rank != shape.Rank)
                throw new ArgumentException($"'{item.Key}': slice {slice} has rank {slice.Rank}, the full shape {shape} has rank {shape.Rank}.", paramName);
            try
            {
                shape = slice.GetSliceShape(shape);
            }
            catch (ArgumentException ex)
            {
                throw new ArgumentException($"'{item.Key}': slice {slice} lies outside the full shape {item.Shape}: {ex.Message}", paramName, ex);
            }
        }
        if (DTypes.IsFixedSize(dtype))
        {
            if (item.Source.Kind == SaveSourceKind.Encoded)
                throw new ArgumentException($"'{item.Key}': fixed-size dtype {DTypes.GetName(dtype)} takes a device or host source, not an encoded one.", paramName);
            var width = DTypes.GetElementSize(dtype);
            if (!shape.TryGetElementCount(out var n) || n > long.MaxValue / width)
                throw new ArgumentException($"'{item.Key}': shape {shape} is too large.", paramName);
            if (n * width != item.Source.LengthInBytes)
                throw new ArgumentException($"'{item.Key}': {DTypes.GetName(dtype)} {shape}{(item.Slice is null ? "" : $" (slice {item.Slice})")} needs " +
                    $"{n * width} bytes, the source has {item.Source.LengthInBytes}.", paramName);
            return;
        }
        if (dtype is DType.String or DType.Variant)
        {
            if (item.Source.Kind != SaveSourceKind.Encoded)
                throw new ArgumentException($"'{item.Key}': {DTypes.GetName(dtype)} needs an encoded source (see EncodedTensor).", paramName);
            if (!shape.TryGetElementCount(out _))
                throw new ArgumentException($"'{item.Key}': shape {shape} is too large.", paramName);
            return;
        }
        throw new ArgumentException($"'{item.Key}': dtype {DTypes.GetName(dtype)} cannot be stored in a bundle.", paramName);
    }

    /// <summary>A partitioned key: its dtype, full shape, and slices in plan order.</summary>
    private sealed class Partition(string key, DType dtype, TensorShape fullShape)
    {
        public string Key { get; } = key;

        public DType DType { get; } = dtype;

        public TensorShape FullShape { get; } = fullShape;

        public List<TensorSlice> Slices { get; } = [];

        public HashSet<TensorSlice> SliceSet { get; } = [];
    }

    private sealed class ByteArrayComparer : IEqualityComparer<byte[]>
    {
        public static readonly ByteArrayComparer Instance = new();

        public bool Equals(byte[]? x, byte[]? y) => x.AsSpan().SequenceEqual(y);

        public int GetHashCode(byte[] obj)
        {
            var h = new HashCode();
            h.AddBytes(obj);
            return h.ToHashCode();
        }
    }
}

using CheckpointGpu.Format;

namespace CheckpointGpu.Pipeline;

/// <summary>
/// Where every byte of a save goes, computed before any byte moves: per shard, the tensors in the given order,
/// packed back to back from offset 0 with no padding (TensorFlow's layout, spec §4.1), so the data files stay
/// TensorFlow-readable and the <c>.index</c> follows from the plan plus the checksums the pipeline reports.
/// </summary>
/// <remarks>Immutable and thread-safe once created. A plan may be reused for many saves of the same tensors (the
/// sources are read anew each time).</remarks>
public sealed class SavePlan
{
    private readonly long[] _shardSizes;
    private readonly PlannedTensor[][] _byShard;

    private SavePlan(int shardCount, PlannedTensor[] tensors, long[] shardSizes, PlannedTensor[][] byShard)
    {
        ShardCount = shardCount;
        Tensors = tensors;
        _shardSizes = shardSizes;
        _byShard = byShard;
        TotalBytes = shardSizes.Sum();
        Header = new BundleHeader(shardCount, BundleEndianness.Little, BundleHeader.CurrentVersion, 0, Array.Empty<int>());
    }

    /// <summary>Number of data files.</summary>
    public int ShardCount { get; }

    /// <summary>The tensors in the order given to <see cref="Create"/>, with offsets and sizes.</summary>
    public IReadOnlyList<PlannedTensor> Tensors { get; }

    /// <summary>Size of each data file in bytes.</summary>
    public IReadOnlyList<long> ShardSizes => _shardSizes;

    /// <summary>Sum of all shard sizes, in bytes.</summary>
    public long TotalBytes { get; }

    /// <summary>The header of the bundle (little-endian, producer 1, the plan's shard count).</summary>
    public BundleHeader Header { get; }

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

    /// <summary>Plans <paramref name="items"/>: within each shard, tensors follow the order of <paramref name="items"/>.</summary>
    /// <param name="items">The tensors, in data order (TF object-based saves put the object graph last).</param>
    /// <param name="shardCount">Number of data files, ≥ 1. Every shard file is created, even if empty.</param>
    /// <returns>The plan.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="items"/> or an item is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="shardCount"/> &lt; 1, or an item's shard id is out of range.</exception>
    /// <exception cref="ArgumentException">Empty or duplicate key; a dtype that cannot be stored (resource, invalid); a fixed-size dtype with an encoded source or a size that differs from elements × width; a string/variant dtype without an encoded source.</exception>
    public static SavePlan Create(IReadOnlyList<SaveItem> items, int shardCount = 1)
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentOutOfRangeException.ThrowIfLessThan(shardCount, 1);
        var keys = new HashSet<string>(items.Count, StringComparer.Ordinal);
        var tensors = new PlannedTensor[items.Count];
        var sizes = new long[shardCount];
        var byShard = new List<PlannedTensor>[shardCount];
        for (var s = 0; s < shardCount; s++) byShard[s] = [];
        for (var i = 0; i < items.Count; i++)
        {
            var item = items[i];
            ArgumentNullException.ThrowIfNull(item, nameof(items));
            ArgumentNullException.ThrowIfNull(item.Source, nameof(items));
            if (string.IsNullOrEmpty(item.Key)) throw new ArgumentException($"Item {i} has an empty key (reserved for the bundle header).", nameof(items));
            if (!keys.Add(item.Key)) throw new ArgumentException($"Duplicate key '{item.Key}' (item {i}).", nameof(items));
            if (item.ShardId < 0 || item.ShardId >= shardCount)
                throw new ArgumentOutOfRangeException(nameof(items), $"Item '{item.Key}' has shard id {item.ShardId}, outside [0, {shardCount}).");
            CheckSize(item);
            var size = item.Source.LengthInBytes;
            var planned = new PlannedTensor(i, item, sizes[item.ShardId], size);
            sizes[item.ShardId] = checked(sizes[item.ShardId] + size);
            tensors[i] = planned;
            byShard[item.ShardId].Add(planned);
        }
        return new SavePlan(shardCount, tensors, sizes, byShard.Select(l => l.ToArray()).ToArray());
    }

    /// <summary>The index entries of this plan given each tensor's masked CRC32C.</summary>
    /// <param name="maskedCrc32C">One masked CRC per tensor, indexed like <see cref="Tensors"/>.</param>
    /// <returns>The entries, in plan order.</returns>
    /// <exception cref="ArgumentException">The CRC count differs from the tensor count.</exception>
    public IReadOnlyList<BundleEntry> ToEntries(IReadOnlyList<uint> maskedCrc32C)
    {
        ArgumentNullException.ThrowIfNull(maskedCrc32C);
        if (maskedCrc32C.Count != Tensors.Count)
            throw new ArgumentException($"Expected {Tensors.Count} checksums, got {maskedCrc32C.Count}.", nameof(maskedCrc32C));
        var entries = new BundleEntry[Tensors.Count];
        for (var i = 0; i < entries.Length; i++)
        {
            var t = Tensors[i];
            entries[i] = new BundleEntry(t.Key, t.Item.DType, t.Item.Shape, t.ShardId, t.Offset, t.Size, maskedCrc32C[i]);
        }
        return entries;
    }

    private static void CheckSize(SaveItem item)
    {
        var dtype = item.DType;
        if (DTypes.IsFixedSize(dtype))
        {
            if (item.Source.Kind == SaveSourceKind.Encoded)
                throw new ArgumentException($"'{item.Key}': fixed-size dtype {DTypes.GetName(dtype)} takes a device or host source, not an encoded one.", nameof(item));
            var width = DTypes.GetElementSize(dtype);
            if (!item.Shape.TryGetElementCount(out var n) || n > long.MaxValue / width)
                throw new ArgumentException($"'{item.Key}': shape {item.Shape} is too large.", nameof(item));
            if (n * width != item.Source.LengthInBytes)
                throw new ArgumentException($"'{item.Key}': {DTypes.GetName(dtype)} {item.Shape} needs {n * width} bytes, the source has {item.Source.LengthInBytes}.", nameof(item));
            return;
        }
        if (dtype is DType.String or DType.Variant)
        {
            if (item.Source.Kind != SaveSourceKind.Encoded)
                throw new ArgumentException($"'{item.Key}': {DTypes.GetName(dtype)} needs an encoded source (see EncodedTensor).", nameof(item));
            if (!item.Shape.TryGetElementCount(out _))
                throw new ArgumentException($"'{item.Key}': shape {item.Shape} is too large.", nameof(item));
            return;
        }
        throw new ArgumentException($"'{item.Key}': dtype {DTypes.GetName(dtype)} cannot be stored in a bundle.", nameof(item));
    }
}

namespace CheckpointGpu.Format;

/// <summary>Settings of a <see cref="TensorBundleWriter"/>.</summary>
/// <remarks>Init-only; may be shared between writers.</remarks>
public sealed class TensorBundleWriterOptions
{
    private readonly int _shardCount = 1;
    private readonly int _dataAlignmentInBytes = 1;

    /// <summary>The defaults (one shard, no alignment, producer 1, min consumer 0).</summary>
    public static TensorBundleWriterOptions Default { get; } = new();

    /// <summary>Number of data files (<c>num_shards</c>), each created even if it stays empty. Default 1.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Less than 1.</exception>
    public int ShardCount
    {
        get => _shardCount;
        init { ArgumentOutOfRangeException.ThrowIfLessThan(value, 1); _shardCount = value; }
    }

    /// <summary>
    /// Pad each tensor with zero bytes so the next one starts at a multiple of this many bytes (TF's
    /// <c>data_alignment</c>). Padding is excluded from sizes and CRCs. Default 1 (no padding, what TF writes).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Less than 1.</exception>
    public int DataAlignmentInBytes
    {
        get => _dataAlignmentInBytes;
        init { ArgumentOutOfRangeException.ThrowIfLessThan(value, 1); _dataAlignmentInBytes = value; }
    }

    /// <summary>Header <c>version.producer</c>. Default 1 (<c>kTensorBundleVersion</c>).</summary>
    public int Producer { get; init; } = BundleHeader.CurrentVersion;

    /// <summary>Header <c>version.min_consumer</c>. Default 0; TF refuses files with a value above 1.</summary>
    public int MinConsumer { get; init; }

    /// <summary>Header <c>version.bad_consumers</c>. Default empty.</summary>
    public IReadOnlyList<int> BadConsumers { get; init; } = Array.Empty<int>();

    /// <summary>
    /// Issue 14: LZ4-compress whole fixed-size tensors (<see cref="BundleCompression"/>); <see langword="null"/> (default)
    /// writes plain TensorFlow bundles. When set, the header gets producer = min_consumer =
    /// <see cref="BundleHeader.CompressedVersion"/> (overriding <see cref="Producer"/>/<see cref="MinConsumer"/>), so
    /// TensorFlow refuses the bundle; tensors that do not shrink, slices and strings are stored plain.
    /// </summary>
    public BundleCompressionOptions? Compression { get; init; }

    /// <summary>Size of the buffer used per data shard, in bytes. Default 1 MiB.</summary>
    public int WriteBufferBytes { get; init; } = 1 << 20;

    /// <summary>Flush data and index files to stable storage before renaming (<c>RandomAccess.FlushToDisk</c>). Default <see langword="true"/>.</summary>
    public bool FlushToDisk { get; init; } = true;

    /// <summary>The storage seam every file operation goes through (<see cref="BundleCommit"/>). Default <see langword="null"/>: <see cref="LocalShardStorage.Instance"/>.</summary>
    public IShardStorage? Storage { get; init; }
}

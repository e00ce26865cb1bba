namespace CheckpointGpu.Format;

/// <summary>
/// The bundle header (value of the empty key, <c>BundleHeaderProto</c>; spec sections 3.1–3.2).
/// </summary>
/// <param name="ShardCount">Number of data files (<c>num_shards</c>); all data file names derive from it.</param>
/// <param name="Endianness">Byte order of tensor payloads.</param>
/// <param name="Producer">Bundle format producer version (TF writes 1).</param>
/// <param name="MinConsumer">Minimum consumer version (TF writes 0; a reader of version 1 refuses values &gt; 1).</param>
/// <param name="BadConsumers">Consumer versions that must not read the bundle.</param>
public sealed record BundleHeader(int ShardCount, BundleEndianness Endianness, int Producer, int MinConsumer, IReadOnlyList<int> BadConsumers)
{
    /// <summary>The header TensorFlow writes for a little-endian single-shard bundle (<c>08 01 1a 02 08 01</c>).</summary>
    public static BundleHeader Default { get; } = new(1, BundleEndianness.Little, 1, 0, Array.Empty<int>());

    /// <summary>The bundle version this reader implements (<c>kTensorBundleVersion</c>).</summary>
    public const int CurrentVersion = 1;

    /// <summary>
    /// Issue 14: producer and min_consumer of a compressed bundle (2). TensorFlow's <c>BundleReader</c> calls
    /// <c>CheckVersions(header.version(), kTensorBundleVersion = 1, kTensorBundleMinProducer = 0, ...)</c>
    /// (<c>tensorflow/core/util/tensor_bundle/tensor_bundle.cc</c>), and <c>CheckVersions</c>
    /// (<c>tensorflow/core/framework/versions.cc</c>) fails with InvalidArgument "Checkpoint min consumer version 2
    /// above current version 1 for TensorFlow …. Please upgrade TensorFlow." when <c>min_consumer</c> exceeds the
    /// consumer version: TensorFlow refuses the file instead of misreading compressed bytes as tensors.
    /// This library reads both versions.
    /// </summary>
    public const int CompressedVersion = 2;

    /// <inheritdoc/>
    public bool Equals(BundleHeader? other) => other is not null && ShardCount == other.ShardCount
        && Endianness == other.Endianness && Producer == other.Producer && MinConsumer == other.MinConsumer
        && BadConsumers.SequenceEqual(other.BadConsumers);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(ShardCount, Endianness, Producer, MinConsumer, BadConsumers.Count);
}

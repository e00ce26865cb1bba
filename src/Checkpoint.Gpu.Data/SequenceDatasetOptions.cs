namespace CheckpointGpu.Data;

/// <summary>How <see cref="SequenceDataset.Open"/> splits files into shards and sequences.</summary>
public sealed record SequenceDatasetOptions
{
    /// <summary>Default shard size: 1 MiB.</summary>
    public const long DefaultShardSizeInBytes = 1L << 20;

    /// <summary>
    /// Bytes per shard: each file is split into consecutive shards of this many bytes (the last one shorter).
    /// Sequences never cross a shard boundary. Must be at least the sequence length.
    /// </summary>
    public long ShardSizeInBytes { get; init; } = DefaultShardSizeInBytes;

    /// <summary>
    /// Distance in bytes between the starts of consecutive sequences of a shard; <see langword="null"/> means the
    /// sequence length (non-overlapping sequences). Must be positive.
    /// </summary>
    public int? StrideInBytes { get; init; }
}

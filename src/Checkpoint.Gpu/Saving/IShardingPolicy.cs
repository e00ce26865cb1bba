using CheckpointGpu.Format;

namespace CheckpointGpu;

/// <summary>One tensor offered to an <see cref="IShardingPolicy"/>.</summary>
/// <param name="Key">Checkpoint key.</param>
/// <param name="DType">Element type.</param>
/// <param name="Shape">Shape (for the object graph: a scalar string).</param>
/// <param name="EstimatedSizeInBytes">Payload size in bytes (exact for fixed-size tensors, approximate for strings).</param>
public readonly record struct ShardableTensor(string Key, DType DType, TensorShape Shape, long EstimatedSizeInBytes);

/// <summary>The result of an <see cref="IShardingPolicy"/>: a data-file index per tensor.</summary>
/// <param name="ShardCount">Number of data files (<c>num_shards</c>), at least 1; every shard must receive a tensor.</param>
/// <param name="ShardIds">Data-file index of each tensor, in the order they were offered.</param>
public sealed record ShardAssignment(int ShardCount, IReadOnlyList<int> ShardIds);

/// <summary>
/// Decides which data file each tensor goes to (TF's <c>experimental_sharding_callback</c>,
/// <c>tensorflow/python/checkpoint/sharding/</c>; spec §9). Tensors never change order within a shard, and the
/// object graph (offered last) stays last in its shard.
/// </summary>
public interface IShardingPolicy
{
    /// <summary>Assigns every tensor to a shard.</summary>
    /// <param name="tensors">Tensors in data order; the last one is <c>_CHECKPOINTABLE_OBJECT_GRAPH</c>.</param>
    /// <returns>The assignment; shards must be numbered 0..ShardCount-1 and none may be empty.</returns>
    ShardAssignment AssignShards(IReadOnlyList<ShardableTensor> tensors);
}

/// <summary>
/// TF's default <c>ShardByTaskPolicy</c> on one host: everything in one data file (<c>data-00000-of-00001</c>).
/// </summary>
public sealed class ShardByTaskPolicy : IShardingPolicy
{
    /// <summary>The shared instance.</summary>
    public static ShardByTaskPolicy Instance { get; } = new();

    /// <inheritdoc/>
    public ShardAssignment AssignShards(IReadOnlyList<ShardableTensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        return new ShardAssignment(1, new int[tensors.Count]);
    }
}

/// <summary>
/// Packs whole tensors, in order, into data files of at most <see cref="MaxShardSizeInBytes"/> bytes (a tensor larger
/// than the limit gets a file of its own). Unlike TF's <c>MaxShardSizePolicy</c> it never splits a tensor into slices.
/// </summary>
public sealed class MaxShardSizePolicy : IShardingPolicy
{
    /// <summary>Creates the policy.</summary>
    /// <param name="maxShardSizeInBytes">Size limit per data file in bytes; positive.</param>
    /// <exception cref="ArgumentOutOfRangeException">Not positive.</exception>
    public MaxShardSizePolicy(long maxShardSizeInBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardSizeInBytes);
        MaxShardSizeInBytes = maxShardSizeInBytes;
    }

    /// <summary>The size limit per data file, in bytes.</summary>
    public long MaxShardSizeInBytes { get; }

    /// <inheritdoc/>
    public ShardAssignment AssignShards(IReadOnlyList<ShardableTensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var ids = new int[tensors.Count];
        var shard = 0;
        long used = 0;
        for (var i = 0; i < tensors.Count; i++)
        {
            var size = tensors[i].EstimatedSizeInBytes;
            if (used > 0 && used + size > MaxShardSizeInBytes) { shard++; used = 0; }
            ids[i] = shard;
            used += size;
        }
        return new ShardAssignment(tensors.Count == 0 ? 1 : shard + 1, ids);
    }
}

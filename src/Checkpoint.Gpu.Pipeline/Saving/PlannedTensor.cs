namespace CheckpointGpu.Pipeline;

/// <summary>A <see cref="SaveItem"/> with its place in the output: index in the plan, byte offset and size in its shard.</summary>
/// <param name="Index">Position in <see cref="SavePlan.Tensors"/> (the order given to <see cref="SavePlan.Create"/>).</param>
/// <param name="Item">The item.</param>
/// <param name="Offset">Byte offset of the payload in data shard <see cref="SaveItem.ShardId"/>.</param>
/// <param name="Size">Payload length in bytes.</param>
public sealed record PlannedTensor(int Index, SaveItem Item, long Offset, long Size)
{
    /// <summary>The item's key.</summary>
    public string Key => Item.Key;

    /// <summary>The item's shard.</summary>
    public int ShardId => Item.ShardId;
}

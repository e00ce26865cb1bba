using System.Text;
using CheckpointGpu.Format;

namespace CheckpointGpu.Pipeline;

/// <summary>A <see cref="SaveItem"/> with its place in the output: index in the plan, byte offset and size in its shard.</summary>
/// <param name="Index">Position in <see cref="SavePlan.Tensors"/> (the order given to <see cref="SavePlan.Create"/>).</param>
/// <param name="Item">The item.</param>
/// <param name="Offset">Byte offset of the payload in data shard <see cref="SaveItem.ShardId"/>.</param>
/// <param name="Size">Payload length in bytes.</param>
/// <remarks>Immutable and thread-safe. The <c>Entry…</c> members describe the index entry holding this payload; they are derived
/// from <see cref="Item"/> on each access (the slice key is encoded anew), so cache them in hot loops.</remarks>
public sealed record PlannedTensor(int Index, SaveItem Item, long Offset, long Size)
{
    /// <summary>The item's key: the full tensor's key, also for a slice item (see <see cref="EntryKey"/> for the table key).</summary>
    public string Key => Item.Key;

    /// <summary>The item's shard.</summary>
    public int ShardId => Item.ShardId;

    /// <summary>
    /// True when the payload is stored under an encoded slice key: the item has a <see cref="SaveItem.Slice"/> that does not
    /// cover the whole tensor (a covering slice is stored as an ordinary entry, as <c>BundleWriter::AddSlice</c> does).
    /// </summary>
    public bool IsSliceEntry => Item.Slice is { } slice && !slice.CoversWhole(Item.Shape);

    /// <summary>The shape stored in the payload's entry: the slice's shape for a slice entry, else <see cref="SaveItem.Shape"/>.</summary>
    /// <exception cref="ArgumentException">The slice does not fit the full shape (impossible for tensors of a created plan).</exception>
    public TensorShape EntryShape => IsSliceEntry ? Item.Slice!.GetSliceShape(Item.Shape) : Item.Shape;

    /// <summary>
    /// The exact table key bytes of the payload's entry: <see cref="TensorSlice.EncodeSliceKey(string, TensorSlice)"/> of the full key
    /// for a slice entry (not valid UTF-8 in general), else the UTF-8 bytes of <see cref="Key"/>. A new array on each access.
    /// </summary>
    public ReadOnlyMemory<byte> EntryKeyUtf8 => EntryKeyBytes();

    /// <summary>
    /// The payload entry's key as text, as <see cref="BundleEntry.Key"/> shows it (via <see cref="CheckpointKeys.ToDisplay"/>): e.g.
    /// <c>w:0,5:-</c> for a slice entry, else <see cref="Key"/>.
    /// </summary>
    public string EntryKey => IsSliceEntry ? CheckpointKeys.ToDisplay(EntryKeyBytes()) : Item.Key;

    internal byte[] EntryKeyBytes() =>
        IsSliceEntry ? TensorSlice.EncodeSliceKey(Item.Key, Item.Slice!) : Encoding.UTF8.GetBytes(Item.Key);
}

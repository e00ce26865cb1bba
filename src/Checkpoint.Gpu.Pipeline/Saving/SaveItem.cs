using CheckpointGpu.Format;

namespace CheckpointGpu.Pipeline;

/// <summary>One tensor (or one slice of a partitioned tensor) of a save: its checkpoint key, dtype, full shape, bytes and data shard.</summary>
/// <param name="Key">Table key of the full tensor, e.g. <c>model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE</c>; non-empty. Unique within a
/// plan for whole tensors; the slices of one partitioned tensor share it (see <see cref="Slice"/>).</param>
/// <param name="DType">Element type. Fixed-size dtypes take device or host sources; DT_STRING/DT_VARIANT take encoded sources.</param>
/// <param name="Shape">Full shape of the tensor (also for a slice item); for a whole fixed-size tensor, elements × width must equal the source length.</param>
/// <param name="Source">Where the bytes come from.</param>
/// <param name="ShardId">Data file, 0 ≤ id &lt; the plan's shard count. Default 0.</param>
/// <remarks>Immutable and thread-safe (the source's memory is not copied; see <see cref="SaveSource"/>).</remarks>
public sealed record SaveItem(string Key, DType DType, TensorShape Shape, SaveSource Source, int ShardId = 0)
{
    /// <summary>
    /// The part of the full tensor this item holds, or null for a whole tensor. When set, <see cref="Key"/> and
    /// <see cref="Shape"/> still name the full tensor, <see cref="Source"/> holds only the slice's elements (row-major
    /// within the slice, little-endian, slice element count × dtype width bytes), and the dtype must be fixed-size.
    /// </summary>
    /// <remarks>
    /// Stored as TensorFlow's <c>BundleWriter::AddSlice</c> stores it (<c>tensorflow/core/util/tensor_bundle/tensor_bundle.cc</c>;
    /// spec section 3.4): a slice covering the whole tensor becomes an ordinary entry under <see cref="Key"/>; any other slice
    /// goes under the encoded slice key (<see cref="TensorSlice.EncodeSliceKey(string, TensorSlice)"/>) with the slice's shape,
    /// and the full key's entry lists the slices. Checked by <see cref="SavePlan.Create"/> (and eagerly by <see cref="ForSlice"/>).
    /// </remarks>
    public TensorSlice? Slice { get; init; }

    /// <summary>
    /// An item holding one slice of a partitioned tensor (TensorFlow's <c>BundleWriter::AddSlice</c>,
    /// <c>tensorflow/core/util/tensor_bundle/tensor_bundle.cc</c>; spec section 3.4).
    /// </summary>
    /// <param name="fullKey">Table key of the full tensor (not the encoded slice key); non-empty.</param>
    /// <param name="dtype">A fixed-size element type, the same for every slice of <paramref name="fullKey"/>.</param>
    /// <param name="fullShape">Shape of the full tensor (row-major, outermost dimension first), the same for every slice of <paramref name="fullKey"/>.</param>
    /// <param name="slice">The region held, one extent per dimension of <paramref name="fullShape"/>, inside it.</param>
    /// <param name="source">The slice's elements, row-major within the slice, little-endian: exactly the slice's element count × the
    /// dtype's width in bytes. A device or host source; read when the save runs, not now.</param>
    /// <param name="shardId">Data file, 0 ≤ id &lt; the plan's shard count (checked by <see cref="SavePlan.Create"/>). Default 0.</param>
    /// <returns>The item, with <see cref="Slice"/> set.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="fullKey"/>, <paramref name="slice"/> or <paramref name="source"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="fullKey"/> is empty; <paramref name="dtype"/> is not fixed-size; the slice's rank
    /// differs from <paramref name="fullShape"/>'s or an extent lies outside it; <paramref name="source"/> is encoded or its length is not
    /// the slice's element count × dtype width.</exception>
    public static SaveItem ForSlice(string fullKey, DType dtype, TensorShape fullShape, TensorSlice slice, SaveSource source, int shardId = 0)
    {
        ArgumentException.ThrowIfNullOrEmpty(fullKey);
        ArgumentNullException.ThrowIfNull(slice);
        ArgumentNullException.ThrowIfNull(source);
        var item = new SaveItem(fullKey, dtype, fullShape, source, shardId) { Slice = slice };
        SavePlan.CheckItem(item, nameof(slice));
        return item;
    }
}

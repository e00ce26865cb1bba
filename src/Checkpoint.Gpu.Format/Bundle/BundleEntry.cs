using System.Text;

namespace CheckpointGpu.Format;

/// <summary>
/// One tensor's index record (<c>BundleEntryProto</c>; spec section 3.1): dtype, full shape, which data
/// file, where, how many bytes, and TensorFlow's masked CRC32C.
/// </summary>
/// <param name="Key">The table key as text. Keys that are not valid UTF-8 (slice entries) get a readable, lossless-by-<see cref="KeyUtf8"/> form, see <see cref="KeyUtf8"/>.</param>
/// <param name="DType">Element type.</param>
/// <param name="Shape">Full shape of the stored tensor (for a slice entry: the slice's shape).</param>
/// <param name="ShardId">Data file index, 0 ≤ id &lt; <see cref="BundleHeader.ShardCount"/>.</param>
/// <param name="Offset">Byte offset of the payload in the data file.</param>
/// <param name="Size">Payload length in bytes.</param>
/// <param name="Crc32C">Masked CRC32C as stored (see <see cref="MaskedCrc32C"/>).</param>
/// <param name="Slices">Non-empty for the full-tensor entry of a partitioned tensor (then offset/size/crc are 0).</param>
/// <remarks>Immutable; value equality compares every field, the slices element-wise, and the key bytes.</remarks>
public sealed record BundleEntry(string Key, DType DType, TensorShape Shape, int ShardId, long Offset, long Size, uint Crc32C, IReadOnlyList<TensorSlice> Slices)
{
    // Raw key bytes and the Key they belong to: a `with { Key = … }` copy must not keep stale bytes.
    private readonly byte[]? _keyUtf8;
    private readonly string? _keyUtf8Owner;

    /// <summary>Creates an unpartitioned entry.</summary>
    /// <param name="key">The table key.</param>
    /// <param name="dtype">Element type.</param>
    /// <param name="shape">Full shape.</param>
    /// <param name="shardId">Data file index.</param>
    /// <param name="offset">Byte offset in the data file.</param>
    /// <param name="size">Payload length in bytes.</param>
    /// <param name="crc32c">Masked CRC32C as stored.</param>
    public BundleEntry(string key, DType dtype, TensorShape shape, int shardId, long offset, long size, uint crc32c)
        : this(key, dtype, shape, shardId, offset, size, crc32c, Array.Empty<TensorSlice>())
    {
    }

    /// <summary>
    /// The exact key bytes in the table. Defaults to the UTF-8 encoding of <see cref="Key"/>; differs from it
    /// only for keys that are not valid UTF-8 (partition slice keys, spec section 3.4).
    /// </summary>
    public ReadOnlyMemory<byte> KeyUtf8
    {
        get => GetKeyBytes();
        init
        {
            _keyUtf8 = value.ToArray();
            _keyUtf8Owner = Key;
        }
    }

    internal byte[] GetKeyBytes() =>
        _keyUtf8 is not null && string.Equals(_keyUtf8Owner, Key, StringComparison.Ordinal) ? _keyUtf8 : Encoding.UTF8.GetBytes(Key);

    /// <summary>
    /// Issue 14: how the payload is compressed in the data file, or <see langword="null"/> for a plain entry (every
    /// TensorFlow-written entry). When set, <see cref="Size"/> and <see cref="Crc32C"/> still describe the uncompressed
    /// tensor bytes; the stored byte count is <see cref="BundleEntryCompression.StoredSize"/> (see <see cref="BundleCompression"/>).
    /// </summary>
    public BundleEntryCompression? Compression { get; init; }

    /// <summary>Bytes the payload occupies in its data file: <see cref="BundleEntryCompression.StoredSize"/> when compressed, else <see cref="Size"/>.</summary>
    public long StoredSize => Compression?.StoredSize ?? Size;

    /// <summary>True for the full-tensor entry of a partitioned tensor (it lists <see cref="Slices"/> and holds no bytes).</summary>
    public bool IsPartitioned => Slices.Count > 0;

    /// <summary>True for a slice entry (key starting with byte <c>0x00</c>, spec section 3.4).</summary>
    public bool IsSliceEntry => GetKeyBytes() is [0, ..];

    /// <summary>The element count of <see cref="Shape"/>.</summary>
    /// <exception cref="OverflowException">The product of the dimensions overflows.</exception>
    public long ElementCount => Shape.ElementCount;

    /// <inheritdoc/>
    public bool Equals(BundleEntry? other) => other is not null
        && string.Equals(Key, other.Key, StringComparison.Ordinal) && DType == other.DType && Shape == other.Shape
        && ShardId == other.ShardId && Offset == other.Offset && Size == other.Size && Crc32C == other.Crc32C
        && Slices.SequenceEqual(other.Slices) && GetKeyBytes().AsSpan().SequenceEqual(other.GetKeyBytes());

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Key, DType, Shape, ShardId, Offset, Size, Crc32C, Slices.Count);
}

using System.Buffers.Binary;
using System.Text;
using CheckpointGpu.Format;

namespace CheckpointGpu.Distributed;

/// <summary>
/// What every worker of a multi-worker restore needs before reading values: the checkpoint's prefix, the bytes of its
/// <c>.index</c> file and its serialized object graph (<c>_CHECKPOINTABLE_OBJECT_GRAPH</c>). One rank reads it
/// (<see cref="Read"/>), ships <see cref="ToBytes"/> to the others (an MPI broadcast in <c>Checkpoint.Gpu.Mpi</c>),
/// and every rank restores with <see cref="Checkpoint.RestoreFromMetadata"/>, reading only
/// the values and slices it owns.
/// </summary>
/// <remarks>Immutable; thread-safe. The bytes are untrusted: the index is parsed with every check of a file read.</remarks>
public sealed class CheckpointMetadata
{
    private const int Magic = 0x4D4B4443; // "CDKM" little-endian

    private CheckpointMetadata(string prefix, byte[] indexBytes, byte[]? objectGraphBytes)
    {
        Prefix = prefix;
        IndexBytes = indexBytes;
        ObjectGraphBytes = objectGraphBytes;
    }

    /// <summary>Absolute checkpoint prefix (its data files are <c>&lt;prefix&gt;.data-*</c>, which every rank must see).</summary>
    public string Prefix { get; }

    /// <summary>The <c>.index</c> file's bytes.</summary>
    public ReadOnlyMemory<byte> IndexBytes { get; }

    /// <summary>The serialized <c>TrackableObjectGraph</c>, or null for a name-based (TF1) checkpoint.</summary>
    public byte[]? ObjectGraphBytes { get; }

    /// <summary>Reads the index and, if present, the object graph of the checkpoint at <paramref name="prefix"/> (both checksum-verified).</summary>
    /// <param name="prefix">Checkpoint prefix.</param>
    /// <returns>The metadata.</returns>
    /// <exception cref="FileNotFoundException">No such checkpoint.</exception>
    /// <exception cref="CheckpointFormatException">The index or the object graph entry is corrupt.</exception>
    public static CheckpointMetadata Read(string prefix)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        var full = Path.GetFullPath(prefix);
        var indexPath = BundleNaming.IndexFile(full);
        if (!File.Exists(indexPath)) throw new FileNotFoundException($"{Path.GetFileName(indexPath)}: checkpoint index not found [{indexPath}].", indexPath);
        var indexBytes = File.ReadAllBytes(indexPath);
        var index = TensorBundlePartIndex.Parse(full, indexBytes);
        byte[]? graph = null;
        using (var reader = TensorBundleReader.OpenWithIndex(index))
        {
            if (reader.TryGetEntry(CheckpointKeys.ObjectGraph, out var entry))
            {
                if (entry.DType != DType.String || entry.Shape.Rank != 0)
                    throw new CheckpointFormatException(CheckpointFormatError.MalformedProto, indexPath, "the object graph entry is not a DT_STRING scalar", entry.Key);
                graph = reader.ReadStrings(entry)[0];
            }
        }
        return new CheckpointMetadata(full, indexBytes, graph);
    }

    /// <summary>Parses <see cref="IndexBytes"/>.</summary>
    /// <exception cref="CheckpointFormatException">The index bytes are corrupt.</exception>
    internal TensorBundlePartIndex ParseIndex() => TensorBundlePartIndex.Parse(Prefix, IndexBytes.Span);

    /// <summary>Serializes: magic, then length-prefixed (int32 little-endian) UTF-8 prefix, index bytes and graph bytes (length −1 for none).</summary>
    /// <returns>The bytes.</returns>
    public byte[] ToBytes()
    {
        var prefix = Encoding.UTF8.GetBytes(Prefix);
        var graphLength = ObjectGraphBytes?.Length ?? 0;
        var bytes = new byte[4 + 4 + prefix.Length + 4 + IndexBytes.Length + 4 + graphLength];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, Magic);
        var at = 4;
        void Put(ReadOnlySpan<byte> part, int length)
        {
            BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(at), length);
            at += 4;
            part.CopyTo(bytes.AsSpan(at));
            at += part.Length;
        }
        Put(prefix, prefix.Length);
        Put(IndexBytes.Span, IndexBytes.Length);
        Put(ObjectGraphBytes, ObjectGraphBytes is null ? -1 : graphLength);
        return bytes;
    }

    /// <summary>Parses what <see cref="ToBytes"/> produced (bounds-checked; the index itself is validated when used).</summary>
    /// <param name="bytes">The bytes.</param>
    /// <returns>The metadata.</returns>
    /// <exception cref="InvalidDataException">Wrong magic, or a length outside the bytes.</exception>
    public static CheckpointMetadata FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < 16 || BinaryPrimitives.ReadInt32LittleEndian(bytes) != Magic)
            throw new InvalidDataException($"Checkpoint metadata: {bytes.Length} bytes without the expected header.");
        var at = 4;
        byte[]? Take(ReadOnlySpan<byte> all, bool nullable)
        {
            if (all.Length - at < 4) throw new InvalidDataException($"Checkpoint metadata: truncated at byte {at}.");
            var length = BinaryPrimitives.ReadInt32LittleEndian(all[at..]);
            at += 4;
            if (length == -1 && nullable) return null;
            if (length < 0 || length > all.Length - at) throw new InvalidDataException($"Checkpoint metadata: length {length} at byte {at - 4} outside the {all.Length} bytes.");
            var part = all.Slice(at, length).ToArray();
            at += length;
            return part;
        }
        var prefix = Encoding.UTF8.GetString(Take(bytes, false)!);
        var index = Take(bytes, false)!;
        var graph = Take(bytes, true);
        if (prefix.Length == 0) throw new InvalidDataException("Checkpoint metadata: empty prefix.");
        return new CheckpointMetadata(prefix, index, graph);
    }
}

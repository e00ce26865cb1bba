namespace CheckpointGpu.Format;

/// <summary>
/// What is wrong with a checkpoint file; carried by <see cref="CheckpointFormatException.Error"/>.
/// </summary>
/// <remarks>
/// Values flagged by <see cref="CheckpointFormatException.IsUnsupportedInput"/> (legacy V1, unsupported
/// version, compression or dtype kind) describe files that are well-formed but that this engine does not
/// handle; every other value describes corrupt, truncated or hostile input (TensorFlow's DataLoss).
/// </remarks>
public enum CheckpointFormatError
{
    /// <summary>Unclassified format problem.</summary>
    Unknown = 0,

    /// <summary>The file is shorter than the smallest valid layout (e.g. an <c>.index</c> under the 48-byte footer).</summary>
    TooShort,

    /// <summary>The <c>.index</c> footer does not end with the table magic <c>0xdb4775248b80fb57</c>.</summary>
    BadMagic,

    /// <summary>A block handle, block trailer or restart array is malformed.</summary>
    BadBlockTrailer,

    /// <summary>A block's entries or varints are malformed (truncated varint, shared prefix too long, …).</summary>
    MalformedBlock,

    /// <summary>A stored masked CRC32C does not match the bytes (block, tensor payload or string lengths).</summary>
    ChecksumMismatch,

    /// <summary>An offset or block handle points outside its file.</summary>
    InvalidOffset,

    /// <summary>A declared size disagrees with the dtype, shape or file contents.</summary>
    SizeMismatch,

    /// <summary>Arithmetic on sizes read from the file overflowed 64 bits.</summary>
    Overflow,

    /// <summary>A value exceeds a limit set in <see cref="TensorBundleReaderOptions"/>.</summary>
    LimitExceeded,

    /// <summary>A tensor shape is negative, has unknown rank, or has too many elements.</summary>
    InvalidShape,

    /// <summary>An entry's dtype is not a known TensorFlow <c>DataType</c>.</summary>
    UnknownDType,

    /// <summary>An entry's dtype is known but cannot be stored in or read from a bundle by this engine (resource, *_REF, …).</summary>
    UnsupportedDType,

    /// <summary>The same key appears twice in the table.</summary>
    DuplicateKey,

    /// <summary>Table keys are not in strictly increasing unsigned byte order.</summary>
    UnsortedKeys,

    /// <summary>An entry's shard id is negative or not below the header's <c>num_shards</c>.</summary>
    InvalidShardId,

    /// <summary>The table has no header entry (empty key) as its first entry.</summary>
    MissingHeader,

    /// <summary>The header's version forbids this reader (<c>min_consumer</c> &gt; 1, bad consumer, negative producer).</summary>
    UnsupportedVersion,

    /// <summary>Reserved: no longer raised since Snappy blocks (type 1) are read; an unknown block type is <see cref="BadBlockTrailer"/>.</summary>
    UnsupportedCompression,

    /// <summary>The checkpoint is a legacy TF V1 (SavedTensorSlices) table, not a V2 tensor bundle.</summary>
    LegacyV1Checkpoint,

    /// <summary>Big-endian data of a dtype that cannot be byte-swapped (variant).</summary>
    UnsupportedEndianness,

    /// <summary>A protobuf message (header, entry, object graph) cannot be parsed.</summary>
    MalformedProto,

    /// <summary>A DT_STRING or DT_VARIANT payload is malformed (lengths beyond the payload, bad varints).</summary>
    MalformedStringTensor,

    /// <summary>The text-format <c>checkpoint</c> state file cannot be parsed.</summary>
    MalformedStateFile,

    /// <summary>A partitioned tensor's slice list or slice key is malformed.</summary>
    InvalidSlice,

    /// <summary>The data file is shorter than an entry needs (truncated shard).</summary>
    TruncatedData,

    /// <summary>
    /// The index has no entry for a key the caller asked to read (TF's <c>NotFound</c> "Key … not found in checkpoint" from
    /// <c>BundleReader::Lookup</c>, <c>tensorflow/core/util/tensor_bundle/tensor_bundle.cc</c>); <see cref="CheckpointFormatException.FilePath"/>
    /// is the <c>.index</c> file and <see cref="CheckpointFormatException.Key"/> the key.
    /// </summary>
    KeyNotFound,
}

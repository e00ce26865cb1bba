using CheckpointGpu.Format;

namespace CheckpointGpu.IO;

/// <summary>
/// Where a save sends tensor values (the seam the Pipeline's IO device replaces). Tensors arrive in the order they
/// must appear in each data file; the object graph is added last by the caller.
/// </summary>
internal interface ITensorWriter
{
    /// <summary>Copies a variable's device buffer to the bundle under <paramref name="key"/>.</summary>
    void AddVariable(string key, Variable variable, int shardId);

    /// <summary>Adds a host tensor (fixed-size or string) under <paramref name="key"/>.</summary>
    void AddHost(string key, HostTensor tensor, int shardId);

    /// <summary>
    /// Copies a variable holding one slice of a larger tensor: a slice entry plus the slice appended to the full-tensor
    /// entry <paramref name="fullKey"/> (TF's <c>BundleWriter::AddSlice</c>, spec §3.4).
    /// </summary>
    void AddVariableSlice(string fullKey, TensorShape fullShape, TensorSlice slice, Variable variable, int shardId);
}

/// <summary>Dtype and shape of a stored tensor, as recorded in the index.</summary>
internal readonly record struct StoredTensorInfo(DType DType, TensorShape Shape, long SizeInBytes, int ShardId, long Offset);

/// <summary>
/// Where a restore reads tensor values from (the seam the Pipeline replaces). Implementations verify checksums.
/// </summary>
internal interface ITensorReader : IDisposable
{
    /// <summary>The checkpoint prefix (for messages).</summary>
    string Prefix { get; }

    /// <summary>Every tensor key except the header (and slice entries).</summary>
    IEnumerable<string> Keys { get; }

    /// <summary>Looks up a key.</summary>
    bool TryGetInfo(string key, out StoredTensorInfo info);

    /// <summary>The serialized <c>_CHECKPOINTABLE_OBJECT_GRAPH</c> proto, or <see langword="null"/> for a name-based checkpoint.</summary>
    byte[]? ReadObjectGraphBytes();

    /// <summary>Reads a fixed-size tensor straight into a variable's device buffer (dtype/shape already checked).</summary>
    void ReadIntoVariable(string key, Variable variable);

    /// <summary>Reads a tensor into host memory.</summary>
    HostTensor ReadHost(string key);

    /// <summary>
    /// Reads region <paramref name="slice"/> of the (possibly partitioned) tensor <paramref name="key"/> into a variable
    /// whose shape is the region's (TF's <c>LookupSlice</c>).
    /// </summary>
    void ReadSliceIntoVariable(string key, TensorSlice slice, Variable variable);
}

using CheckpointGpu.Format;

namespace CheckpointGpu.Pipeline;

/// <summary>One tensor of a save: its checkpoint key, dtype, full shape, bytes and data shard.</summary>
/// <param name="Key">Table key, e.g. <c>model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE</c>; non-empty and unique within a plan.</param>
/// <param name="DType">Element type. Fixed-size dtypes take device or host sources; DT_STRING/DT_VARIANT take encoded sources.</param>
/// <param name="Shape">Full shape; for fixed-size dtypes, elements × width must equal the source length.</param>
/// <param name="Source">Where the bytes come from.</param>
/// <param name="ShardId">Data file, 0 ≤ id &lt; the plan's shard count. Default 0.</param>
public sealed record SaveItem(string Key, DType DType, TensorShape Shape, SaveSource Source, int ShardId = 0);

using CheckpointGpu.Format;

namespace CheckpointGpu.Distributed.Variables;

/// <summary>
/// One slice of a partitioned variable held in this process (TF1's partition variable with its
/// <c>SaveSliceInfo(full_name, full_shape, var_offset, var_shape)</c>).
/// </summary>
/// <param name="Variable">The device buffer holding the slice; its shape is the slice's shape.</param>
/// <param name="Slice">The region of the full tensor it holds, in full-tensor coordinates.</param>
public sealed record VariablePart(Variable Variable, TensorSlice Slice);

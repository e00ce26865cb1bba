using CheckpointGpu.Devices;

namespace CheckpointGpu.Nn;

/// <summary>A gradient for one variable: float32 values with the variable's shape, in a buffer on its accelerator.</summary>
/// <param name="Variable">The float32 variable to update.</param>
/// <param name="Value">∂loss/∂variable, row-major, at least <c>Variable.ElementCount</c> float32 elements; not owned.</param>
public readonly record struct Gradient(Variable Variable, DeviceBuffer Value);

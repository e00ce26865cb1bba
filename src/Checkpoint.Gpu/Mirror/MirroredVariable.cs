namespace CheckpointGpu;

/// <summary>A variable that <see cref="CheckpointMirror"/> created for one checkpoint value.</summary>
/// <param name="Key">The checkpoint key the value came from (e.g. <c>model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE</c>, or a TF1 variable name).</param>
/// <param name="Variable">The variable; its buffer lives on the mirror's accelerator and is disposed with the mirror.</param>
public sealed record MirroredVariable(string Key, Variable Variable);

namespace CheckpointGpu;

/// <summary>A variable that <see cref="LoadedCheckpoint"/> created for one checkpoint value.</summary>
/// <param name="Key">The checkpoint key the value came from (e.g. <c>model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE</c>, or a TF1 variable name).</param>
/// <param name="Variable">The variable; its buffer lives on the loaded checkpoint's accelerator and is disposed with the loaded checkpoint.</param>
public sealed record LoadedVariable(string Key, Variable Variable);

namespace CheckpointGpu.Nn;

/// <summary>Element-wise activation of a <see cref="Dense"/> layer (Keras <c>activation=</c>).</summary>
public enum Activation
{
    /// <summary>Identity (Keras <c>None</c>/<c>"linear"</c>).</summary>
    Linear = 0,

    /// <summary><c>max(x, 0)</c>.</summary>
    Relu = 1,

    /// <summary>Hyperbolic tangent.</summary>
    Tanh = 2,
}

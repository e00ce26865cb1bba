namespace CheckpointGpu.Nn;

/// <summary>
/// A subclassed Keras model: layers and other state are tracked under attribute names (edges such as <c>fc1</c>,
/// <c>fc2</c>, <c>q</c>) in assignment order; <see cref="Build"/> chains the <see cref="Dense"/> layers in that order and
/// names their variables inside the model's scope (Keras 3: <c>&lt;model&gt;/kernel</c>, path
/// <c>&lt;model&gt;/&lt;layer&gt;/kernel</c>, as observed in <c>obj-keras3-tf219-manager-3ckpts</c>).
/// </summary>
/// <remarks>
/// Derive from it and track layers in the constructor (<c>Fc1 = Track("fc1", new Dense(...))</c>), or track them from
/// outside. The default forward order is the tracking order of the Dense layers; a model with another topology
/// drives its layers itself. Thread-safety: not thread-safe. Tracked layers are disposed with the model.
/// </remarks>
public class Model : Module
{
    /// <summary>Creates a model.</summary>
    /// <param name="name">Model name (Keras <c>name=</c>), used as the variables' name scope.</param>
    /// <exception cref="ArgumentException"><paramref name="name"/> is empty.</exception>
    public Model(string name) : base(name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
    }

    /// <summary>The tracked <see cref="Dense"/> layers in tracking order.</summary>
    public IReadOnlyList<Dense> Layers => GetChildren().Select(c => c.Target).OfType<Dense>().Distinct().ToArray();

    /// <summary>Builds the <see cref="Layers"/> in order, chaining sizes from <paramref name="inputSize"/>, inside this model's name scope.</summary>
    /// <param name="inputSize">Input size of the first layer.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="inputSize"/> is less than 1.</exception>
    /// <exception cref="CheckpointMismatchException">A pending checkpoint value has another shape or dtype.</exception>
    public virtual void Build(int inputSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(inputSize, 1);
        var size = inputSize;
        foreach (var dense in Layers)
        {
            dense.Build(size, Name);
            size = dense.Units;
        }
    }
}

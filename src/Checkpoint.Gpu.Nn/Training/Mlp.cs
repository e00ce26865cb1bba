namespace CheckpointGpu.Nn;

/// <summary>Builders for the multi-layer perceptrons the training helpers and the demo use.</summary>
public static class Mlp
{
    /// <summary>
    /// A Keras-style <see cref="Sequential"/> of <see cref="Dense"/> layers: one per entry of <paramref name="hiddenUnits"/>
    /// with <paramref name="hiddenActivation"/>, then a linear output layer; layer <c>i</c>'s kernel is seeded with
    /// <c>seed + i</c>.
    /// </summary>
    /// <param name="accelerator">Accelerator for the variables.</param>
    /// <param name="inputSize">Input size.</param>
    /// <param name="hiddenUnits">Hidden layer sizes.</param>
    /// <param name="outputSize">Output size.</param>
    /// <param name="hiddenActivation">Activation of the hidden layers.</param>
    /// <param name="seed">Initializer seed.</param>
    /// <param name="naming">Naming of the layers.</param>
    /// <param name="build">Build now (false: build later, e.g. after a restore, so variables are restored on creation).</param>
    /// <returns>The model (the caller disposes it).</returns>
    /// <exception cref="ArgumentOutOfRangeException">A size is less than 1.</exception>
    public static Sequential CreateSequential(Devices.Accelerator accelerator, int inputSize, IReadOnlyList<int> hiddenUnits, int outputSize,
        Activation hiddenActivation, ulong seed, KerasNaming naming = KerasNaming.Keras2, bool build = true)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        ArgumentNullException.ThrowIfNull(hiddenUnits);
        ArgumentOutOfRangeException.ThrowIfLessThan(inputSize, 1);
        var model = new Sequential();
        var i = 0UL;
        foreach (var units in hiddenUnits) model.Add(new Dense(accelerator, units, hiddenActivation, naming, seed: seed + i++));
        model.Add(new Dense(accelerator, outputSize, Activation.Linear, naming, seed: seed + i));
        if (build) model.Build(inputSize);
        return model;
    }
}

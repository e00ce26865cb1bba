namespace CheckpointGpu.Nn;

/// <summary>
/// A synthetic regression problem generated deterministically from a seed: inputs uniform in [−1, 1), targets
/// <c>y_j = sin(Σ_i A_ij x_i) + 0.5 Σ_i B_ij x_i</c> with coefficient matrices A, B drawn once from the seed. Batch
/// <c>n</c> depends only on (seed, n), so a resumed run sees exactly the batches an uninterrupted one would.
/// </summary>
/// <remarks>Immutable after construction; <see cref="FillBatch"/> is thread-safe.</remarks>
public sealed class RegressionTask
{
    private readonly double[] _a;
    private readonly double[] _b;

    /// <summary>Creates the problem.</summary>
    /// <param name="inputSize">Features per example (at least 1).</param>
    /// <param name="outputSize">Targets per example (at least 1).</param>
    /// <param name="batchSize">Examples per batch (at least 1).</param>
    /// <param name="seed">Seed of the coefficients and of every batch.</param>
    /// <exception cref="ArgumentOutOfRangeException">A size is less than 1.</exception>
    public RegressionTask(int inputSize, int outputSize, int batchSize, ulong seed)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(inputSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(outputSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        InputSize = inputSize;
        OutputSize = outputSize;
        BatchSize = batchSize;
        Seed = seed;
        var random = new SplitMix64(seed);
        _a = new double[inputSize * outputSize];
        _b = new double[inputSize * outputSize];
        for (var i = 0; i < _a.Length; i++) _a[i] = random.NextSingle() * 2.0 - 1.0;
        for (var i = 0; i < _b.Length; i++) _b[i] = random.NextSingle() * 2.0 - 1.0;
    }

    /// <summary>Features per example.</summary>
    public int InputSize { get; }

    /// <summary>Targets per example.</summary>
    public int OutputSize { get; }

    /// <summary>Examples per batch.</summary>
    public int BatchSize { get; }

    /// <summary>The seed.</summary>
    public ulong Seed { get; }

    /// <summary>Writes batch <paramref name="batchIndex"/>: inputs row-major [batch, input], targets row-major [batch, output].</summary>
    /// <param name="batchIndex">Batch number (any value; training loops use the optimizer's iteration count).</param>
    /// <param name="inputs">At least BatchSize × InputSize elements.</param>
    /// <param name="targets">At least BatchSize × OutputSize elements.</param>
    /// <exception cref="ArgumentException">A span is too short.</exception>
    public void FillBatch(long batchIndex, Span<float> inputs, Span<float> targets)
    {
        if (inputs.Length < BatchSize * InputSize) throw new ArgumentException($"Need {BatchSize * InputSize} input elements.", nameof(inputs));
        if (targets.Length < BatchSize * OutputSize) throw new ArgumentException($"Need {BatchSize * OutputSize} target elements.", nameof(targets));
        var random = new SplitMix64(Seed ^ ((ulong)batchIndex + 1) * 0xD1B54A32D192ED03UL);
        for (var r = 0; r < BatchSize; r++)
        {
            var x = inputs.Slice(r * InputSize, InputSize);
            for (var i = 0; i < InputSize; i++) x[i] = random.NextSingle() * 2f - 1f;
            for (var j = 0; j < OutputSize; j++)
            {
                double s = 0, l = 0;
                for (var i = 0; i < InputSize; i++)
                {
                    s += _a[i * OutputSize + j] * x[i];
                    l += _b[i * OutputSize + j] * x[i];
                }
                targets[r * OutputSize + j] = (float)(Math.Sin(s) + 0.5 * l);
            }
        }
    }
}

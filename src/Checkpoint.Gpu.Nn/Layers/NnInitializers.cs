using System.Runtime.InteropServices;

namespace CheckpointGpu.Nn;

/// <summary>Deterministic initializers for <see cref="Dense"/> (seeded; independent of TF's random streams).</summary>
public static class NnInitializers
{
    /// <summary>
    /// Glorot (Xavier) uniform: float32 values uniform in <c>[−l, l)</c>, <c>l = √(6 / (fanIn + fanOut))</c>, from a
    /// SplitMix64 stream seeded with <paramref name="seed"/>; identical on every machine and run.
    /// </summary>
    /// <param name="fanIn">Input size.</param>
    /// <param name="fanOut">Output size.</param>
    /// <param name="seed">Seed.</param>
    /// <returns>The initializer (for float32 variables).</returns>
    /// <exception cref="ArgumentOutOfRangeException">A fan is less than 1.</exception>
    public static VariableInitializer GlorotUniform(int fanIn, int fanOut, ulong seed)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(fanIn, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(fanOut, 1);
        var limit = MathF.Sqrt(6f / (fanIn + fanOut));
        return VariableInitializer.FromHost(bytes =>
        {
            var values = MemoryMarshal.Cast<byte, float>(bytes);
            var random = new SplitMix64(seed);
            for (var i = 0; i < values.Length; i++) values[i] = (random.NextSingle() * 2f - 1f) * limit;
        });
    }
}


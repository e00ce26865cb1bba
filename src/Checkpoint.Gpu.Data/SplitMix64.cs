namespace CheckpointGpu.Data;

/// <summary>
/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014): a 64-bit
/// generator whose whole state is one <see cref="ulong"/>, so the iterator can checkpoint it exactly.
/// <see cref="System.Random"/> does not expose its state, which is why this is not a library type.
/// </summary>
internal struct SplitMix64
{
    public ulong State;

    public SplitMix64(ulong state) { State = state; }

    public ulong Next()
    {
        var z = State += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, <paramref name="bound"/>), without modulo bias (rejection of the short final range).</summary>
    public long NextBelow(long bound)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bound);
        var b = (ulong)bound;
        var limit = ulong.MaxValue - (ulong.MaxValue % b);
        ulong r;
        do r = Next(); while (r >= limit);
        return (long)(r % b);
    }

    /// <summary>A generator for a (seed, stream) pair, independent of any other state.</summary>
    public static SplitMix64 Derive(ulong seed, ulong stream)
    {
        var g = new SplitMix64(seed ^ (stream * 0xD1B54A32D192ED03UL));
        g.Next();
        return new SplitMix64(g.Next());
    }
}

namespace CheckpointGpu.Nn;

/// <summary>SplitMix64 (Steele, Lea, Flood 2014): a tiny, fast, platform-independent generator for test data and initializers.</summary>
internal struct SplitMix64(ulong seed)
{
    private ulong _state = seed;

    public ulong NextUInt64()
    {
        var z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, 1) with 24 random bits (exact in float32).</summary>
    public float NextSingle() => (NextUInt64() >> 40) * (1f / (1 << 24));
}

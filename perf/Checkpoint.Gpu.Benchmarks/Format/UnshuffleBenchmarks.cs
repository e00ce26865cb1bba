using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using CheckpointGpu.Format;

namespace CheckpointGpu.Benchmarks.Format;

/// <summary>
/// The LZ4 byte-shuffle filter's inverse (issue 14; runs over every decompressed byte of a shuffled tensor): the SSE2
/// interleave against the scalar byte loop it replaced, on 16 MiB for the floating-point element widths, beside a plain
/// copy of the same bytes (the floor). Run: <c>dotnet run -c Release --project perf/Checkpoint.Gpu.Benchmarks -- --filter '*Unshuffle*'</c>.
/// </summary>
[Config(typeof(Config))]
public class UnshuffleBenchmarks
{
    private sealed class Config : ManualConfig
    {
        public Config() => AddColumn(new ThroughputColumn());
    }

    private byte[] _source = [];
    private byte[] _destination = [];

    /// <summary>Bytes per operation.</summary>
    [Params(16 << 20)]
    public int SizeInBytes { get; set; }

    /// <summary>Element width in bytes: 2 (half, bfloat16), 4 (float32), 8 (float64).</summary>
    [Params(2, 4, 8)]
    public int Width { get; set; }

    /// <summary>Allocates and touches the buffers.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _source = new byte[SizeInBytes];
        new Random(1).NextBytes(_source);
        _destination = new byte[SizeInBytes];
        _source.CopyTo(_destination, 0);
    }

    /// <summary>The vectorized un-shuffle (what the reader runs).</summary>
    [Benchmark]
    public void Unshuffle() => BundleCompression.Unshuffle(_source, _destination, Width);

    /// <summary>The scalar loop (before vectorization).</summary>
    [Benchmark(Baseline = true)]
    public void UnshuffleScalar() => BundleCompression.UnshuffleScalar(_source, _destination, Width);

    /// <summary>A plain copy of the same bytes.</summary>
    [Benchmark]
    public void Copy() => _source.AsSpan().CopyTo(_destination);
}

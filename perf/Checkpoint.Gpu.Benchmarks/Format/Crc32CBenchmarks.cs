using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using CheckpointGpu.Format;

namespace CheckpointGpu.Benchmarks.Format;

/// <summary>
/// CRC32C throughput (masked CRC is on every tensor read and write) against a plain <see cref="Span{T}.CopyTo"/>
/// of the same bytes, the floor any checksum-while-copying path pays anyway.
/// </summary>
[MemoryDiagnoser]
[Config(typeof(Config))]
public class Crc32CBenchmarks
{
    private sealed class Config : ManualConfig
    {
        public Config() => AddColumn(new ThroughputColumn());
    }

    private byte[] _source = [];
    private byte[] _destination = [];

    /// <summary>Bytes per operation: 4 KiB, 64 KiB, 1 MiB, 64 MiB.</summary>
    [Params(4 << 10, 64 << 10, 1 << 20, 64 << 20)]
    public int SizeInBytes { get; set; }

    /// <summary>Allocates and touches the buffers.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _source = new byte[SizeInBytes];
        new Random(1).NextBytes(_source);
        _destination = new byte[SizeInBytes];
        _source.CopyTo(_destination, 0);
    }

    /// <summary>Hardware CRC32C (three interleaved lanes).</summary>
    [Benchmark]
    public uint Crc32C() => MaskedCrc32C.Compute(_source);

    /// <summary>Single-lane CRC32C loop (8 bytes per instruction, latency-bound), for comparison.</summary>
    [Benchmark]
    public uint Crc32CSingleLane()
    {
        var crc = ~0u;
        var span = _source.AsSpan();
        var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(span);
        foreach (var w in words) crc = System.Numerics.BitOperations.Crc32C(crc, w);
        return ~crc;
    }

    /// <summary>memcpy of the same size (baseline).</summary>
    [Benchmark(Baseline = true)]
    public void Copy() => _source.AsSpan().CopyTo(_destination);
}

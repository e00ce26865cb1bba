using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using CheckpointGpu.Format;

namespace CheckpointGpu.Benchmarks.Format;

/// <summary>
/// End-to-end bundle throughput: write (data + CRC + index, no fsync, page cache) and read (positional reads + CRC
/// verification into caller memory, warm page cache) of 16 float32 tensors totalling <see cref="SizeInBytes"/>.
/// </summary>
[MemoryDiagnoser]
[Config(typeof(Config))]
public class BundleBenchmarks
{
    private sealed class Config : ManualConfig
    {
        public Config() => AddColumn(new ThroughputColumn());
    }

    private const int TensorCount = 16;
    private string _dir = "";
    private byte[][] _tensors = [];
    private byte[] _readBuffer = [];

    /// <summary>Total payload per bundle: 256 MiB.</summary>
    [Params(256 << 20)]
    public int SizeInBytes { get; set; }

    /// <summary>Creates the tensors and one bundle to read.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _dir = Path.Combine(Path.GetTempPath(), "ckptgpu-bench-" + Environment.ProcessId);
        Directory.CreateDirectory(_dir);
        var rng = new Random(2);
        _tensors = Enumerable.Range(0, TensorCount).Select(_ => { var b = new byte[SizeInBytes / TensorCount]; rng.NextBytes(b); return b; }).ToArray();
        _readBuffer = new byte[SizeInBytes / TensorCount];
        Write(Path.Combine(_dir, "read"));
    }

    /// <summary>Deletes the files.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private void Write(string prefix)
    {
        using var w = new TensorBundleWriter(prefix, new TensorBundleWriterOptions { FlushToDisk = false });
        for (var i = 0; i < _tensors.Length; i++)
            w.Add($"model/layer_{i}/kernel/.ATTRIBUTES/VARIABLE_VALUE", DType.Float, new TensorShape(_tensors[i].Length / 4), _tensors[i]);
        w.Finish();
    }

    /// <summary>Writes the whole bundle (temp names, CRC, index, rename; no fsync).</summary>
    [Benchmark]
    public void WriteBundle() => Write(Path.Combine(_dir, "write"));

    /// <summary>Opens the bundle and reads every tensor with CRC verification.</summary>
    [Benchmark]
    public long ReadBundle()
    {
        using var r = TensorBundleReader.Open(Path.Combine(_dir, "read"));
        long total = 0;
        foreach (var e in r.Entries)
        {
            r.ReadTensor(e, _readBuffer.AsSpan(0, (int)e.Size));
            total += e.Size;
        }
        return total;
    }
}

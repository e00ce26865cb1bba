using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using CheckpointGpu.Devices;

namespace CheckpointGpu.Benchmarks.Devices;

/// <summary>
/// Host↔device copy bandwidth on one stream, pageable vs pinned host memory, next to a plain host memcpy of the
/// same size in the same run (the limit). Every host buffer is allocated and touched once in setup (pre-faulted),
/// so the figures are steady-state; each operation is one enqueue followed by a blocking synchronize.
/// </summary>
/// <remarks>
/// Run: <c>dotnet run -c Release --project perf/Checkpoint.Gpu.Benchmarks -- --filter '*CopyBandwidth*' --job short</c>.
/// Results: <c>perf/Checkpoint.Gpu.Benchmarks/Devices/RESULTS.md</c>.
/// </remarks>
[Config(typeof(Config))]
public unsafe class CopyBandwidthBenchmarks
{
    private Accelerator _accelerator = null!;
    private AcceleratorStream _stream = null!;
    private DeviceBuffer _device = null!;
    private PinnedHostBuffer _pinned = null!;
    private byte[] _pageable = null!;
    private nint _pageablePointer;
    private void* _memcpySource;
    private void* _memcpyDestination;

    /// <summary>The backend under test.</summary>
    [Params(AcceleratorKind.Cpu, AcceleratorKind.IlgpuCpu, AcceleratorKind.OpenCL)]
    public AcceleratorKind Backend { get; set; }

    /// <summary>Bytes per copy: 4 KiB, 1 MiB, 16 MiB, 256 MiB.</summary>
    [Params(4096, 1 << 20, 16 << 20, 256 << 20)]
    public int SizeInBytes { get; set; }

    /// <summary>Allocates and pre-faults every buffer.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _accelerator = Accelerator.Create(Backend);
        _stream = _accelerator.CreateStream();
        _device = _accelerator.Allocate(SizeInBytes);
        _pinned = _accelerator.AllocatePinned(SizeInBytes);
        _pageable = GC.AllocateArray<byte>(SizeInBytes, pinned: true); // pageable, but not moved by the GC
        new Random(1).NextBytes(_pageable);
        _pageablePointer = (nint)Unsafe.AsPointer(ref _pageable[0]);
        _pinned.GetSpan(0, SizeInBytes).Fill(3);
        _stream.EnqueueFill(_device.AsView(), 1);
        _stream.Synchronize();
        _memcpySource = NativeMemory.AlignedAlloc((nuint)SizeInBytes, 4096);
        _memcpyDestination = NativeMemory.AlignedAlloc((nuint)SizeInBytes, 4096);
        NativeMemory.Fill(_memcpySource, (nuint)SizeInBytes, 5);
        NativeMemory.Fill(_memcpyDestination, (nuint)SizeInBytes, 6);
    }

    /// <summary>Releases everything.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        NativeMemory.AlignedFree(_memcpySource);
        NativeMemory.AlignedFree(_memcpyDestination);
        _accelerator.Dispose();
    }

    /// <summary>The limit: one host memcpy of the same size between two pre-faulted buffers.</summary>
    [Benchmark(Baseline = true)]
    public void Memcpy() => NativeMemory.Copy(_memcpySource, _memcpyDestination, (nuint)SizeInBytes);

    /// <summary>Device → pageable host memory.</summary>
    [Benchmark]
    public void DeviceToHost_Pageable()
    {
        _stream.EnqueueCopyToHost(_device.AsView(), _pageablePointer);
        _stream.Synchronize();
    }

    /// <summary>Device → pinned host memory.</summary>
    [Benchmark]
    public void DeviceToHost_Pinned()
    {
        _stream.EnqueueCopyToHost(_device.AsView(), _pinned);
        _stream.Synchronize();
    }

    /// <summary>Pageable host memory → device.</summary>
    [Benchmark]
    public void HostToDevice_Pageable()
    {
        _stream.EnqueueCopyFromHost(_pageablePointer, _device.AsView());
        _stream.Synchronize();
    }

    /// <summary>Pinned host memory → device.</summary>
    [Benchmark]
    public void HostToDevice_Pinned()
    {
        _stream.EnqueueCopyFromHost(_pinned, _device.AsView());
        _stream.Synchronize();
    }

    private sealed class Config : ManualConfig
    {
        public Config()
        {
            AddColumn(new ThroughputColumn());
            WithOrderer(new BenchmarkDotNet.Order.DefaultOrderer(BenchmarkDotNet.Order.SummaryOrderPolicy.Declared));
            HideColumns(BenchmarkDotNet.Columns.Column.Error, BenchmarkDotNet.Columns.Column.StdDev);
        }
    }
}

using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using CheckpointGpu.Devices;
using CheckpointGpu.Nn;

namespace CheckpointGpu.Benchmarks.Nn;

/// <summary>
/// The Nn training kernels per backend: native CPU loops, the ILGPU kernel source on ILGPU's CPU accelerator, and the
/// OpenCL C kernels on PoCL. Each operation is one kernel call followed by a synchronize of the default stream, on
/// buffers allocated and filled in setup; shapes are those of <c>ckpt demo</c>'s MLP scaled up (batch 256, 256 units).
/// </summary>
/// <remarks>
/// Run: <c>dotnet run -c Release --project perf/Checkpoint.Gpu.Benchmarks -- --filter '*NnKernel*' --job short</c>.
/// Results: <c>perf/Checkpoint.Gpu.Benchmarks/Nn/RESULTS.md</c>.
/// </remarks>
[Config(typeof(Config))]
public class NnKernelBenchmarks
{
    private const int Batch = 256;
    private const int Units = 256;
    private const int Elements = 1 << 20;

    private Accelerator _accelerator = null!;
    private NnKernels _kernels = null!;
    private DeviceBuffer _a = null!, _b = null!, _c = null!;
    private DeviceBuffer _var = null!, _m = null!, _v = null!, _grad = null!;

    /// <summary>The backend under test.</summary>
    [Params(AcceleratorKind.Cpu, AcceleratorKind.IlgpuCpu, AcceleratorKind.OpenCL)]
    public AcceleratorKind Backend { get; set; }

    /// <summary>Allocates, fills and warms up (ILGPU and OpenCL compile kernels on first use).</summary>
    [GlobalSetup]
    public void Setup()
    {
        _accelerator = Accelerator.Create(Backend);
        _kernels = NnKernels.For(_accelerator);
        DeviceBuffer Filled(int count, int seed)
        {
            var values = new float[count];
            var random = new Random(seed);
            for (var i = 0; i < count; i++) values[i] = (float)(random.NextDouble() - 0.5);
            var buffer = _accelerator.Allocate(count * sizeof(float));
            _accelerator.DefaultStream.EnqueueCopyFromHost(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray(), buffer.AsView());
            return buffer;
        }
        _a = Filled(Batch * Units, 1);
        _b = Filled(Units * Units, 2);
        _c = Filled(Batch * Units, 3);
        _var = Filled(Elements, 4);
        _m = Filled(Elements, 5);
        _v = _accelerator.Allocate(Elements * sizeof(float));
        _accelerator.DefaultStream.EnqueueFill(_v.AsView(), 0);
        _grad = Filled(Elements, 6);
        _accelerator.DefaultStream.Synchronize();
        MatMul();
        MatMulTransposedA();
        Adam();
        BiasGrad();
        ReluAndGrad();
    }

    /// <summary>Releases everything.</summary>
    [GlobalCleanup]
    public void Cleanup() => _accelerator.Dispose();

    /// <summary>Forward product [256, 256] · [256, 256] (16.8 M multiply-adds).</summary>
    [Benchmark]
    public void MatMul()
    {
        _kernels.MatMul(false, false, Batch, Units, Units, _a, _b, _c);
        _accelerator.DefaultStream.Synchronize();
    }

    /// <summary>Weight gradient Xᵀ · dY, A transposed (the backward pass's product).</summary>
    [Benchmark]
    public void MatMulTransposedA()
    {
        _kernels.MatMul(true, false, Units, Units, Batch, _a, _c, _b);
        _accelerator.DefaultStream.Synchronize();
    }

    /// <summary>Adam update of 1 Mi elements.</summary>
    [Benchmark]
    public void Adam()
    {
        _kernels.AdamUpdate(Elements, _var, _m, _v, _grad, 1e-3f, 0.9f, 0.999f, 1e-7f);
        _accelerator.DefaultStream.Synchronize();
    }

    /// <summary>Bias gradient: column sums of a [256, 256] matrix.</summary>
    [Benchmark]
    public void BiasGrad()
    {
        _kernels.BiasGrad(Batch, Units, _c, _a);
        _accelerator.DefaultStream.Synchronize();
    }

    /// <summary>ReLU forward and backward over [256, 256].</summary>
    [Benchmark]
    public void ReluAndGrad()
    {
        _kernels.Activate(Activation.Relu, Batch * Units, _c);
        _kernels.ActivationGrad(Activation.Relu, Batch * Units, _c, _a);
        _accelerator.DefaultStream.Synchronize();
    }

    private sealed class Config : ManualConfig
    {
        public Config()
        {
            WithOrderer(new BenchmarkDotNet.Order.DefaultOrderer(BenchmarkDotNet.Order.SummaryOrderPolicy.Declared));
            HideColumns(BenchmarkDotNet.Columns.Column.Error, BenchmarkDotNet.Columns.Column.StdDev);
        }
    }
}

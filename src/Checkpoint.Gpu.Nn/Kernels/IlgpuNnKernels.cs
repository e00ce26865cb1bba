using CheckpointGpu.Devices;
using CheckpointGpu.Devices.Ilgpu;
using ILGPU;
using ILGPU.Runtime;
using AcceleratorStream = ILGPU.Runtime.AcceleratorStream;
using Accelerator = CheckpointGpu.Devices.Accelerator;

namespace CheckpointGpu.Nn;

/// <summary>
/// ILGPU backend of <see cref="NnKernels"/>: one C# kernel source for every ILGPU accelerator (CPU, CUDA, OpenCL 2.0+),
/// compiled by ILGPU on first use and launched in order on the accelerator's default stream.
/// </summary>
/// <remarks>
/// Determinism: the same rules as the other backends (STYLE; <see cref="NnKernels"/> remarks): one work item per
/// output element, every sum sequential in ascending index order (matrix products, bias gradient, the loss is one
/// work item), no atomics and no parallel reductions, so results are bit-identical run to run on a given device.
/// On ILGPU's CPU accelerator the kernels run as .NET code under RyuJIT, which does not contract into fused
/// multiply-adds, so they compute exactly what <see cref="CpuNnKernels"/> computes. <c>MathF.Tanh</c>/<c>MathF.Sqrt</c> are
/// mapped to device math by ILGPU.Algorithms on GPUs (contexts made by <see cref="Accelerator.Create(AcceleratorKind, int)"/>
/// enable it; a caller's own context needs <c>EnableAlgorithms()</c>) and are .NET's own on the CPU accelerator.
/// </remarks>
internal sealed class IlgpuNnKernels : NnKernels
{
    private readonly IlgpuAccelerator _ilgpu;
    private readonly Action<AcceleratorStream, Index2D, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape> _gemm;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, int> _biasAdd;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, int, int> _biasGrad;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, int> _activate;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, int> _activationGrad;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _mseGrad;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _mseLoss;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, float> _sgd;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, float, float> _sgdMomentum;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AdamParameters> _adam;

    internal IlgpuNnKernels(IlgpuAccelerator accelerator) : base(accelerator)
    {
        _ilgpu = accelerator;
        var d = accelerator.Device;
        _gemm = d.LoadAutoGroupedKernel<Index2D, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(Gemm);
        _biasAdd = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int>(BiasAdd);
        _biasGrad = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int>(BiasGrad);
        _activate = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, int>(Activate);
        _activationGrad = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int>(ActivationGrad);
        _mseGrad = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(MseGrad);
        _mseLoss = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(MseLoss);
        _sgd = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, float>(Sgd);
        _sgdMomentum = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, float, float>(SgdMomentum);
        _adam = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AdamParameters>(Adam);
    }

    /// <summary>Matrix product dimensions; <c>Flags</c> bit 0: A transposed, bit 1: B transposed.</summary>
    internal readonly record struct GemmShape(int M, int N, int K, int Flags);

    /// <summary>Adam's scalars in one kernel parameter.</summary>
    internal readonly record struct AdamParameters(float Alpha, float Beta1, float Beta2, float Epsilon);

    private ArrayView<float> V(DeviceBuffer buffer) => _ilgpu.GetView<float>(buffer.View(0, buffer.LengthInBytes & ~3L));

    private void Launch(ReadOnlySpan<DeviceBuffer> buffers, Action<AcceleratorStream> launch) =>
        _ilgpu.Enqueue(_ilgpu.DefaultStream, buffers, launch);

    private protected override void MatMulCore(bool transposeA, bool transposeB, int m, int n, int k, DeviceBuffer a, DeviceBuffer b, DeviceBuffer c)
    {
        ArrayView<float> va = V(a), vb = V(b), vc = V(c);
        var shape = new GemmShape(m, n, k, (transposeA ? 1 : 0) | (transposeB ? 2 : 0));
        Launch([a, b, c], s => _gemm(s, new Index2D(n, m), va, vb, vc, shape));
    }

    private protected override void BiasAddCore(int rows, int cols, DeviceBuffer x, DeviceBuffer bias)
    {
        ArrayView<float> vx = V(x).SubView(0, (long)rows * cols), vb = V(bias);
        Launch([x, bias], s => _biasAdd(s, (int)vx.Length, vx, vb, cols));
    }

    private protected override void BiasGradCore(int rows, int cols, DeviceBuffer dy, DeviceBuffer db)
    {
        ArrayView<float> vdy = V(dy), vdb = V(db);
        Launch([dy, db], s => _biasGrad(s, cols, vdy, vdb, rows, cols));
    }

    private protected override void ActivateCore(Activation activation, int count, DeviceBuffer x)
    {
        var vx = V(x);
        Launch([x], s => _activate(s, count, vx, (int)activation));
    }

    private protected override void ActivationGradCore(Activation activation, int count, DeviceBuffer y, DeviceBuffer dy)
    {
        ArrayView<float> vy = V(y), vdy = V(dy);
        Launch([y, dy], s => _activationGrad(s, count, vy, vdy, (int)activation));
    }

    private protected override void MeanSquaredErrorCore(int count, DeviceBuffer prediction, DeviceBuffer target, DeviceBuffer grad, DeviceBuffer loss)
    {
        ArrayView<float> vp = V(prediction), vt = V(target), vg = V(grad), vl = V(loss);
        Launch([prediction, target, grad, loss], s =>
        {
            _mseGrad(s, count, vp, vt, vg, count);
            _mseLoss(s, 1, vp, vt, vl, count);
        });
    }

    private protected override void SgdUpdateCore(int count, DeviceBuffer variable, DeviceBuffer grad, DeviceBuffer? accumulator, float learningRate, float momentum)
    {
        ArrayView<float> vv = V(variable), vg = V(grad);
        if (accumulator is null)
        {
            Launch([variable, grad], s => _sgd(s, count, vv, vg, learningRate));
            return;
        }
        var va = V(accumulator);
        Launch([variable, grad, accumulator], s => _sgdMomentum(s, count, vv, va, vg, learningRate, momentum));
    }

    private protected override void AdamUpdateCore(int count, DeviceBuffer variable, DeviceBuffer m, DeviceBuffer v, DeviceBuffer grad,
        float alpha, float beta1, float beta2, float epsilon)
    {
        ArrayView<float> vvar = V(variable), vm = V(m), vv = V(v), vg = V(grad);
        var p = new AdamParameters(alpha, beta1, beta2, epsilon);
        Launch([variable, m, v, grad], s => _adam(s, count, vvar, vm, vv, vg, p));
    }

    // ------------------------------------------------------------------ kernels (one source for CPU, CUDA, OpenCL)

    /// <summary>c[row, col] = Σ_p op(a)[row, p] · op(b)[p, col], p ascending; index.X = column (of n), index.Y = row (of m).</summary>
    private static void Gemm(Index2D index, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmShape shape)
    {
        int column = index.X, row = index.Y;
        var transposeA = (shape.Flags & 1) != 0;
        var transposeB = (shape.Flags & 2) != 0;
        var sum = 0f;
        for (var p = 0; p < shape.K; p++)
        {
            var av = transposeA ? a[(long)p * shape.M + row] : a[(long)row * shape.K + p];
            var bv = transposeB ? b[(long)column * shape.K + p] : b[(long)p * shape.N + column];
            sum += av * bv;
        }
        c[(long)row * shape.N + column] = sum;
    }

    private static void BiasAdd(Index1D i, ArrayView<float> x, ArrayView<float> bias, int cols) => x[i] += bias[i % cols];

    private static void BiasGrad(Index1D c, ArrayView<float> dy, ArrayView<float> db, int rows, int cols)
    {
        var sum = 0f;
        for (var r = 0; r < rows; r++) sum += dy[(long)r * cols + c];
        db[c] = sum;
    }

    private static void Activate(Index1D i, ArrayView<float> x, int activation)
    {
        var value = x[i];
        x[i] = activation == 1 ? (value > 0f ? value : 0f) : MathF.Tanh(value);
    }

    private static void ActivationGrad(Index1D i, ArrayView<float> y, ArrayView<float> dy, int activation)
    {
        var yi = y[i];
        dy[i] = activation == 1 ? (yi > 0f ? dy[i] : 0f) : dy[i] * (1f - yi * yi);
    }

    private static void MseGrad(Index1D i, ArrayView<float> prediction, ArrayView<float> target, ArrayView<float> grad, int count)
    {
        var d = prediction[i] - target[i];
        grad[i] = 2f * d / count;
    }

    private static void MseLoss(Index1D i, ArrayView<float> prediction, ArrayView<float> target, ArrayView<float> loss, int count)
    {
        var sum = 0f;
        for (var j = 0; j < count; j++)
        {
            var d = prediction[j] - target[j];
            sum += d * d;
        }
        loss[0] = sum / count;
    }

    private static void Sgd(Index1D i, ArrayView<float> variable, ArrayView<float> grad, float learningRate) =>
        variable[i] -= grad[i] * learningRate;

    private static void SgdMomentum(Index1D i, ArrayView<float> variable, ArrayView<float> accumulator, ArrayView<float> grad, float learningRate, float momentum)
    {
        var a = accumulator[i] * momentum - grad[i] * learningRate;
        accumulator[i] = a;
        variable[i] += a;
    }

    private static void Adam(Index1D i, ArrayView<float> variable, ArrayView<float> m, ArrayView<float> v, ArrayView<float> grad, AdamParameters p)
    {
        var g = grad[i];
        var mi = m[i] + (g - m[i]) * (1f - p.Beta1);
        var vi = v[i] + (g * g - v[i]) * (1f - p.Beta2);
        m[i] = mi;
        v[i] = vi;
        variable[i] -= mi * p.Alpha / (MathF.Sqrt(vi) + p.Epsilon);
    }
}

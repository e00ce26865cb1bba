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
/// Every kernel is a grid-stride loop over a launch of at most <see cref="ILGPU.Runtime.Accelerator.MaxNumThreads"/>
/// work items (element <c>i</c> is handled by work item <c>i mod stride</c>): on GPUs that is the usual full
/// occupancy; on ILGPU's CPU accelerator, which simulates every work item, it turns millions of simulated threads
/// into one tight loop per core (perf/…/Nn/RESULTS.md has both figures). Each element's arithmetic is unchanged.
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
    private readonly int _maxThreads;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape> _gemm;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, Loop> _biasAdd;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, Loop> _biasGrad;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, Loop> _activate;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, Loop> _activationGrad;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, Loop> _mseGrad;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _mseLoss;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<int>, ArrayView<float>, ArrayView<float>, EmbeddingShape> _embeddingLookup;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<int>, ArrayView<float>, ArrayView<float>, EmbeddingShape> _embeddingGrad;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, Loop> _softmaxGrad;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, Loop> _softmaxLoss;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, Loop, float> _sgd;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, Loop, Vector2Parameters> _sgdMomentum;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, Loop, AdamParameters> _adam;

    internal IlgpuNnKernels(IlgpuAccelerator accelerator) : base(accelerator)
    {
        _ilgpu = accelerator;
        var d = accelerator.Device;
        _maxThreads = Math.Max(1, d.MaxNumThreads);
        _gemm = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(Gemm);
        _biasAdd = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, Loop>(BiasAdd);
        _biasGrad = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, Loop>(BiasGrad);
        _activate = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, Loop>(Activate);
        _activationGrad = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, Loop>(ActivationGrad);
        _mseGrad = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, Loop>(MseGrad);
        _mseLoss = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(MseLoss);
        _embeddingLookup = d.LoadAutoGroupedKernel<Index1D, ArrayView<int>, ArrayView<float>, ArrayView<float>, EmbeddingShape>(EmbeddingLookup);
        _embeddingGrad = d.LoadAutoGroupedKernel<Index1D, ArrayView<int>, ArrayView<float>, ArrayView<float>, EmbeddingShape>(EmbeddingGrad);
        _softmaxGrad = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, Loop>(SoftmaxGrad);
        _softmaxLoss = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, Loop>(SoftmaxLoss);
        _sgd = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, Loop, float>(Sgd);
        _sgdMomentum = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, Loop, Vector2Parameters>(SgdMomentum);
        _adam = d.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, Loop, AdamParameters>(Adam);
    }

    /// <summary>A grid-stride loop: <c>Count</c> elements, launch extent <c>Stride</c>, plus one integer argument (columns, rows or the activation).</summary>
    internal readonly record struct Loop(long Count, int Stride, int Argument);

    /// <summary>Matrix product dimensions; <c>Flags</c> bit 0: A transposed, bit 1: B transposed; <c>Stride</c>: the launch extent.</summary>
    internal readonly record struct GemmShape(int M, int N, int K, int Flags, int Stride);

    /// <summary>Embedding sizes: <c>Count</c> ids, <c>Dimension</c> columns, <c>Vocabulary</c> table rows; <c>Stride</c>: the launch extent.</summary>
    internal readonly record struct EmbeddingShape(int Count, int Dimension, int Vocabulary, int Stride);

    /// <summary>Learning rate and momentum.</summary>
    internal readonly record struct Vector2Parameters(float LearningRate, float Momentum);

    /// <summary>Adam's scalars in one kernel parameter.</summary>
    internal readonly record struct AdamParameters(float Alpha, float Beta1, float Beta2, float Epsilon);

    private ArrayView<float> V(DeviceBuffer buffer) => _ilgpu.GetView<float>(buffer.View(0, buffer.LengthInBytes & ~3L));

    private ArrayView<int> VI(DeviceBuffer buffer) => _ilgpu.GetView<int>(buffer.View(0, buffer.LengthInBytes & ~3L));

    private Loop For(long count, int argument = 0) => new(count, (int)Math.Max(1, Math.Min(count, _maxThreads)), argument);

    private void Launch(ReadOnlySpan<DeviceBuffer> buffers, Action<AcceleratorStream> launch) =>
        _ilgpu.Enqueue(_ilgpu.DefaultStream, buffers, launch);

    private protected override void MatMulCore(bool transposeA, bool transposeB, int m, int n, int k, DeviceBuffer a, DeviceBuffer b, DeviceBuffer c)
    {
        ArrayView<float> va = V(a), vb = V(b), vc = V(c);
        var stride = For((long)m * n).Stride;
        var shape = new GemmShape(m, n, k, (transposeA ? 1 : 0) | (transposeB ? 2 : 0), stride);
        Launch([a, b, c], s => _gemm(s, stride, va, vb, vc, shape));
    }

    private protected override void BiasAddCore(int rows, int cols, DeviceBuffer x, DeviceBuffer bias)
    {
        ArrayView<float> vx = V(x), vb = V(bias);
        var loop = For((long)rows * cols, cols);
        Launch([x, bias], s => _biasAdd(s, loop.Stride, vx, vb, loop));
    }

    private protected override void BiasGradCore(int rows, int cols, DeviceBuffer dy, DeviceBuffer db)
    {
        ArrayView<float> vdy = V(dy), vdb = V(db);
        var loop = For(cols, rows);
        Launch([dy, db], s => _biasGrad(s, loop.Stride, vdy, vdb, loop));
    }

    private protected override void ActivateCore(Activation activation, int count, DeviceBuffer x)
    {
        var vx = V(x);
        var loop = For(count, (int)activation);
        Launch([x], s => _activate(s, loop.Stride, vx, loop));
    }

    private protected override void ActivationGradCore(Activation activation, int count, DeviceBuffer y, DeviceBuffer dy)
    {
        ArrayView<float> vy = V(y), vdy = V(dy);
        var loop = For(count, (int)activation);
        Launch([y, dy], s => _activationGrad(s, loop.Stride, vy, vdy, loop));
    }

    private protected override void MeanSquaredErrorCore(int count, DeviceBuffer prediction, DeviceBuffer target, DeviceBuffer grad, DeviceBuffer loss)
    {
        ArrayView<float> vp = V(prediction), vt = V(target), vg = V(grad), vl = V(loss);
        var loop = For(count, count);
        Launch([prediction, target, grad, loss], s =>
        {
            _mseGrad(s, loop.Stride, vp, vt, vg, loop);
            _mseLoss(s, 1, vp, vt, vl, count);
        });
    }

    private protected override void EmbeddingLookupCore(int count, int dimension, int vocabulary, DeviceBuffer ids, DeviceBuffer table, DeviceBuffer output)
    {
        ArrayView<int> vids = VI(ids);
        ArrayView<float> vt = V(table), vo = V(output);
        var shape = new EmbeddingShape(count, dimension, vocabulary, For((long)count * dimension).Stride);
        Launch([ids, table, output], s => _embeddingLookup(s, shape.Stride, vids, vt, vo, shape));
    }

    private protected override void EmbeddingGradCore(int count, int dimension, int vocabulary, DeviceBuffer ids, DeviceBuffer outputGrad, DeviceBuffer tableGrad)
    {
        ArrayView<int> vids = VI(ids);
        ArrayView<float> vg = V(outputGrad), vt = V(tableGrad);
        var shape = new EmbeddingShape(count, dimension, vocabulary, For((long)vocabulary * dimension).Stride);
        Launch([ids, outputGrad, tableGrad], s => _embeddingGrad(s, shape.Stride, vids, vg, vt, shape));
    }

    private protected override void SoftmaxCrossEntropyCore(int rows, int classes, DeviceBuffer logits, DeviceBuffer labels, DeviceBuffer grad, DeviceBuffer loss)
    {
        ArrayView<float> vz = V(logits), vg = V(grad), vl = V(loss);
        ArrayView<int> vy = VI(labels);
        var loop = For(rows, classes);
        var single = new Loop(rows, 1, classes);
        Launch([logits, labels, grad, loss], s =>
        {
            _softmaxGrad(s, loop.Stride, vz, vy, vg, loop);
            _softmaxLoss(s, 1, vz, vy, vl, single);
        });
    }

    private protected override void SgdUpdateCore(int count, DeviceBuffer variable, DeviceBuffer grad, DeviceBuffer? accumulator, float learningRate, float momentum)
    {
        ArrayView<float> vv = V(variable), vg = V(grad);
        var loop = For(count);
        if (accumulator is null)
        {
            Launch([variable, grad], s => _sgd(s, loop.Stride, vv, vg, loop, learningRate));
            return;
        }
        var va = V(accumulator);
        var p = new Vector2Parameters(learningRate, momentum);
        Launch([variable, grad, accumulator], s => _sgdMomentum(s, loop.Stride, vv, va, vg, loop, p));
    }

    private protected override void AdamUpdateCore(int count, DeviceBuffer variable, DeviceBuffer m, DeviceBuffer v, DeviceBuffer grad,
        float alpha, float beta1, float beta2, float epsilon)
    {
        ArrayView<float> vvar = V(variable), vm = V(m), vv = V(v), vg = V(grad);
        var loop = For(count);
        var p = new AdamParameters(alpha, beta1, beta2, epsilon);
        Launch([variable, m, v, grad], s => _adam(s, loop.Stride, vvar, vm, vv, vg, loop, p));
    }

    // ------------------------------------------------------------------ kernels (one source for CPU, CUDA, OpenCL)

    /// <summary>c[row, col] = Σ_p op(a)[row, p] · op(b)[p, col], p ascending; element e = row · n + col.</summary>
    private static void Gemm(Index1D index, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmShape shape)
    {
        var total = (long)shape.M * shape.N;
        var transposeA = (shape.Flags & 1) != 0;
        var transposeB = (shape.Flags & 2) != 0;
        for (long e = index; e < total; e += shape.Stride)
        {
            var row = e / shape.N;
            var column = e - row * shape.N;
            var sum = 0f;
            for (var p = 0; p < shape.K; p++)
            {
                var av = transposeA ? a[p * shape.M + row] : a[row * shape.K + p];
                var bv = transposeB ? b[column * shape.K + p] : b[(long)p * shape.N + column];
                sum += av * bv;
            }
            c[e] = sum;
        }
    }

    private static void BiasAdd(Index1D index, ArrayView<float> x, ArrayView<float> bias, Loop loop)
    {
        for (long i = index; i < loop.Count; i += loop.Stride) x[i] += bias[i % loop.Argument];
    }

    /// <summary>db[c] = Σ_r dy[r, c], r ascending; <c>loop.Argument</c> = rows.</summary>
    private static void BiasGrad(Index1D index, ArrayView<float> dy, ArrayView<float> db, Loop loop)
    {
        for (long c = index; c < loop.Count; c += loop.Stride)
        {
            var sum = 0f;
            for (var r = 0; r < loop.Argument; r++) sum += dy[r * loop.Count + c];
            db[c] = sum;
        }
    }

    private static void Activate(Index1D index, ArrayView<float> x, Loop loop)
    {
        for (long i = index; i < loop.Count; i += loop.Stride)
        {
            var value = x[i];
            x[i] = loop.Argument == 1 ? (value > 0f ? value : 0f) : MathF.Tanh(value);
        }
    }

    private static void ActivationGrad(Index1D index, ArrayView<float> y, ArrayView<float> dy, Loop loop)
    {
        for (long i = index; i < loop.Count; i += loop.Stride)
        {
            var yi = y[i];
            dy[i] = loop.Argument == 1 ? (yi > 0f ? dy[i] : 0f) : dy[i] * (1f - yi * yi);
        }
    }

    /// <summary>grad[i] = 2 (p − t) / count; <c>loop.Argument</c> = count.</summary>
    private static void MseGrad(Index1D index, ArrayView<float> prediction, ArrayView<float> target, ArrayView<float> grad, Loop loop)
    {
        for (long i = index; i < loop.Count; i += loop.Stride)
        {
            var d = prediction[i] - target[i];
            grad[i] = 2f * d / loop.Argument;
        }
    }

    /// <summary>The loss: one work item sums in ascending order (a fixed-order reduction, as on every backend).</summary>
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

    /// <summary>output[i, d] = table[ids[i], d] (zeros for an id outside the table); element e = i · dimension + d.</summary>
    private static void EmbeddingLookup(Index1D index, ArrayView<int> ids, ArrayView<float> table, ArrayView<float> output, EmbeddingShape shape)
    {
        var total = (long)shape.Count * shape.Dimension;
        for (long e = index; e < total; e += shape.Stride)
        {
            var i = e / shape.Dimension;
            var d = e - i * shape.Dimension;
            var id = ids[i];
            output[e] = id >= 0 && id < shape.Vocabulary ? table[(long)id * shape.Dimension + d] : 0f;
        }
    }

    /// <summary>tableGrad[v, d] = Σ outputGrad[i, d] over i ascending with ids[i] = v (one work item per table element, no atomics).</summary>
    private static void EmbeddingGrad(Index1D index, ArrayView<int> ids, ArrayView<float> outputGrad, ArrayView<float> tableGrad, EmbeddingShape shape)
    {
        var total = (long)shape.Vocabulary * shape.Dimension;
        for (long e = index; e < total; e += shape.Stride)
        {
            var v = e / shape.Dimension;
            var d = e - v * shape.Dimension;
            var sum = 0f;
            for (var i = 0; i < shape.Count; i++)
            {
                if (ids[i] == v) sum += outputGrad[(long)i * shape.Dimension + d];
            }
            tableGrad[e] = sum;
        }
    }

    /// <summary>Per row: grad = (softmax − one-hot) / rows; <c>loop.Count</c> = rows, <c>loop.Argument</c> = classes.</summary>
    private static void SoftmaxGrad(Index1D index, ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> grad, Loop loop)
    {
        var classes = loop.Argument;
        for (long r = index; r < loop.Count; r += loop.Stride)
        {
            var row = r * classes;
            var label = labels[r];
            var max = logits[row];
            for (var j = 1; j < classes; j++) max = logits[row + j] > max ? logits[row + j] : max;
            var sum = 0f;
            for (var j = 0; j < classes; j++) sum += MathF.Exp(logits[row + j] - max);
            var valid = label >= 0 && label < classes;
            for (var j = 0; j < classes; j++)
                grad[row + j] = valid ? (MathF.Exp(logits[row + j] - max) / sum - (j == label ? 1f : 0f)) / loop.Count : float.NaN;
        }
    }

    /// <summary>The loss: one work item sums the rows' (log s + m − z[label]) in ascending order.</summary>
    private static void SoftmaxLoss(Index1D index, ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> loss, Loop loop)
    {
        var classes = loop.Argument;
        var total = 0f;
        for (long r = 0; r < loop.Count; r++)
        {
            var row = r * classes;
            var label = labels[r];
            var max = logits[row];
            for (var j = 1; j < classes; j++) max = logits[row + j] > max ? logits[row + j] : max;
            var sum = 0f;
            for (var j = 0; j < classes; j++) sum += MathF.Exp(logits[row + j] - max);
            total += label >= 0 && label < classes ? MathF.Log(sum) + max - logits[row + label] : float.NaN;
        }
        loss[0] = total / loop.Count;
    }

    private static void Sgd(Index1D index, ArrayView<float> variable, ArrayView<float> grad, Loop loop, float learningRate)
    {
        for (long i = index; i < loop.Count; i += loop.Stride) variable[i] -= grad[i] * learningRate;
    }

    private static void SgdMomentum(Index1D index, ArrayView<float> variable, ArrayView<float> accumulator, ArrayView<float> grad, Loop loop, Vector2Parameters p)
    {
        for (long i = index; i < loop.Count; i += loop.Stride)
        {
            var a = accumulator[i] * p.Momentum - grad[i] * p.LearningRate;
            accumulator[i] = a;
            variable[i] += a;
        }
    }

    private static void Adam(Index1D index, ArrayView<float> variable, ArrayView<float> m, ArrayView<float> v, ArrayView<float> grad, Loop loop, AdamParameters p)
    {
        for (long i = index; i < loop.Count; i += loop.Stride)
        {
            var g = grad[i];
            var mi = m[i] + (g - m[i]) * (1f - p.Beta1);
            var vi = v[i] + (g * g - v[i]) * (1f - p.Beta2);
            m[i] = mi;
            v[i] = vi;
            variable[i] -= mi * p.Alpha / (MathF.Sqrt(vi) + p.Epsilon);
        }
    }
}

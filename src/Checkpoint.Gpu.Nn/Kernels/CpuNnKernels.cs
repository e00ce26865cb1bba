using System.Numerics;
using CheckpointGpu.Devices;

namespace CheckpointGpu.Nn;

/// <summary>
/// CPU backend of <see cref="NnKernels"/>: plain loops over the CPU buffers' native memory (the CPU backend's
/// <see cref="DeviceBuffer.DangerousGetNativeHandle"/> is the address). Each call first drains the default stream, so
/// copies queued before it have landed, then runs on the calling thread (large matrix products also on pool threads,
/// one row of the result per thread, and returns when they are done). RyuJIT does not contract <c>a*b+c</c> into
/// fused multiply-adds, and every sum runs in ascending order, so results are bit-identical run to run.
/// </summary>
internal sealed unsafe class CpuNnKernels(Accelerator accelerator) : NnKernels(accelerator)
{
    private float* Ptr(DeviceBuffer buffer)
    {
        // Drain first: a copy into this buffer may still be queued (the CPU stream runs on the thread pool).
        Accelerator.DefaultStream.Synchronize();
        return (float*)buffer.DangerousGetNativeHandle();
    }

    private protected override void MatMulCore(bool transposeA, bool transposeB, int m, int n, int k, DeviceBuffer a, DeviceBuffer b, DeviceBuffer c)
    {
        nint pa = (nint)Ptr(a), pb = (nint)Ptr(b), pc = (nint)Ptr(c);
        // Rows of C are independent: large products spread them over the cores. Each element is still summed by one
        // thread in ascending p, so the result does not depend on the split.
        if ((long)m * n * k >= 1 << 20 && m > 1)
            Parallel.For(0, m, row => MatMulRow(transposeA, transposeB, m, n, k, (float*)pa, (float*)pb, (float*)pc, row));
        else
            for (var row = 0; row < m; row++) MatMulRow(transposeA, transposeB, m, n, k, (float*)pa, (float*)pb, (float*)pc, row);
    }

    /// <summary>
    /// One row of C. With B not transposed, the row is accumulated as <c>c[j] += a[row, p] · b[p, j]</c> for p ascending
    /// (vectorized over j, multiply and add rounded separately): every element receives exactly the terms, in exactly
    /// the order and rounding, of the scalar dot product <c>sum += a · b</c> from 0, so both forms are bit-identical.
    /// </summary>
    private static void MatMulRow(bool transposeA, bool transposeB, int m, int n, int k, float* pa, float* pb, float* pc, int row)
    {
        var crow = pc + (long)row * n;
        if (transposeB)
        {
            for (var column = 0; column < n; column++)
            {
                var sum = 0f;
                for (var p = 0; p < k; p++)
                {
                    var av = transposeA ? pa[(long)p * m + row] : pa[(long)row * k + p];
                    sum += av * pb[(long)column * k + p];
                }
                crow[column] = sum;
            }
            return;
        }
        var c = new Span<float>(crow, n);
        c.Clear();
        var width = Vector<float>.Count;
        for (var p = 0; p < k; p++)
        {
            var av = transposeA ? pa[(long)p * m + row] : pa[(long)row * k + p];
            var brow = pb + (long)p * n;
            var j = 0;
            if (Vector.IsHardwareAccelerated)
            {
                var va = new Vector<float>(av);
                for (; j <= n - width; j += width)
                {
                    var product = va * Vector.Load(brow + j);
                    Vector.Store(Vector.Load(crow + j) + product, crow + j);
                }
            }
            for (; j < n; j++) crow[j] += av * brow[j];
        }
    }

    private protected override void BiasAddCore(int rows, int cols, DeviceBuffer x, DeviceBuffer bias)
    {
        float* px = Ptr(x), pb = Ptr(bias);
        for (var r = 0; r < rows; r++)
        {
            var row = px + (long)r * cols;
            for (var c = 0; c < cols; c++) row[c] += pb[c];
        }
    }

    private protected override void BiasGradCore(int rows, int cols, DeviceBuffer dy, DeviceBuffer db)
    {
        float* pdy = Ptr(dy), pdb = Ptr(db);
        for (var c = 0; c < cols; c++)
        {
            var sum = 0f;
            for (var r = 0; r < rows; r++) sum += pdy[(long)r * cols + c];
            pdb[c] = sum;
        }
    }

    private protected override void ActivateCore(Activation activation, int count, DeviceBuffer x)
    {
        var p = Ptr(x);
        if (activation == Activation.Relu)
            for (var i = 0; i < count; i++) p[i] = p[i] > 0f ? p[i] : 0f;
        else
            for (var i = 0; i < count; i++) p[i] = MathF.Tanh(p[i]);
    }

    private protected override void ActivationGradCore(Activation activation, int count, DeviceBuffer y, DeviceBuffer dy)
    {
        float* py = Ptr(y), pdy = Ptr(dy);
        if (activation == Activation.Relu)
            for (var i = 0; i < count; i++) pdy[i] = py[i] > 0f ? pdy[i] : 0f;
        else
            for (var i = 0; i < count; i++) pdy[i] *= 1f - py[i] * py[i];
    }

    private protected override void MeanSquaredErrorCore(int count, DeviceBuffer prediction, DeviceBuffer target, DeviceBuffer grad, DeviceBuffer loss)
    {
        float* pp = Ptr(prediction), pt = Ptr(target), pg = Ptr(grad), pl = Ptr(loss);
        var sum = 0f;
        for (var i = 0; i < count; i++)
        {
            var d = pp[i] - pt[i];
            sum += d * d;
            pg[i] = 2f * d / count;
        }
        pl[0] = sum / count;
    }

    private protected override void EmbeddingLookupCore(int count, int dimension, int vocabulary, DeviceBuffer ids, DeviceBuffer table, DeviceBuffer output)
    {
        int* pids = (int*)Ptr(ids);
        float* pt = Ptr(table), po = Ptr(output);
        for (var i = 0; i < count; i++)
        {
            var id = pids[i];
            var row = po + (long)i * dimension;
            if ((uint)id >= (uint)vocabulary)
            {
                new Span<float>(row, dimension).Clear();
                continue;
            }
            new ReadOnlySpan<float>(pt + (long)id * dimension, dimension).CopyTo(new Span<float>(row, dimension));
        }
    }

    private protected override void EmbeddingGradCore(int count, int dimension, int vocabulary, DeviceBuffer ids, DeviceBuffer outputGrad, DeviceBuffer tableGrad)
    {
        int* pids = (int*)Ptr(ids);
        float* pg = Ptr(outputGrad), pt = Ptr(tableGrad);
        new Span<float>(pt, checked(vocabulary * dimension)).Clear();
        // One ordered pass over the ids: each table element receives its terms in ascending i, starting from 0,
        // exactly the sum the GPU kernels' per-element scan computes.
        for (var i = 0; i < count; i++)
        {
            var id = pids[i];
            if ((uint)id >= (uint)vocabulary) continue;
            float* row = pt + (long)id * dimension, g = pg + (long)i * dimension;
            for (var d = 0; d < dimension; d++) row[d] += g[d];
        }
    }

    private protected override void SoftmaxCrossEntropyCore(int rows, int classes, DeviceBuffer logits, DeviceBuffer labels, DeviceBuffer grad, DeviceBuffer loss)
    {
        float* pz = Ptr(logits), pg = Ptr(grad), pl = Ptr(loss);
        int* py = (int*)Ptr(labels);
        var total = 0f;
        for (var r = 0; r < rows; r++)
        {
            float* z = pz + (long)r * classes, g = pg + (long)r * classes;
            var label = py[r];
            var max = z[0];
            for (var j = 1; j < classes; j++) max = z[j] > max ? z[j] : max;
            var sum = 0f;
            for (var j = 0; j < classes; j++) sum += MathF.Exp(z[j] - max);
            var valid = (uint)label < (uint)classes;
            for (var j = 0; j < classes; j++)
                g[j] = valid ? (MathF.Exp(z[j] - max) / sum - (j == label ? 1f : 0f)) / rows : float.NaN;
            total += valid ? MathF.Log(sum) + max - z[label] : float.NaN;
        }
        pl[0] = total / rows;
    }

    private protected override void SgdUpdateCore(int count, DeviceBuffer variable, DeviceBuffer grad, DeviceBuffer? accumulator, float learningRate, float momentum)
    {
        float* pv = Ptr(variable), pg = Ptr(grad);
        if (accumulator is null)
        {
            for (var i = 0; i < count; i++) pv[i] -= pg[i] * learningRate;
            return;
        }
        var pa = Ptr(accumulator);
        for (var i = 0; i < count; i++)
        {
            var a = pa[i] * momentum - pg[i] * learningRate;
            pa[i] = a;
            pv[i] += a;
        }
    }

    private protected override void AdamUpdateCore(int count, DeviceBuffer variable, DeviceBuffer m, DeviceBuffer v, DeviceBuffer grad,
        float alpha, float beta1, float beta2, float epsilon)
    {
        float* pvar = Ptr(variable), pm = Ptr(m), pv = Ptr(v), pg = Ptr(grad);
        var oneMinusBeta1 = 1f - beta1;
        var oneMinusBeta2 = 1f - beta2;
        for (var i = 0; i < count; i++)
        {
            var g = pg[i];
            var mi = pm[i] + (g - pm[i]) * oneMinusBeta1;
            var vi = pv[i] + (g * g - pv[i]) * oneMinusBeta2;
            pm[i] = mi;
            pv[i] = vi;
            pvar[i] -= mi * alpha / (MathF.Sqrt(vi) + epsilon);
        }
    }
}

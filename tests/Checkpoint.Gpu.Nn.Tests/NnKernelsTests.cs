using CheckpointGpu.Devices;

namespace CheckpointGpu.Nn.Tests;

/// <summary>Each kernel against a straightforward host reference (double with tolerance, or exact float where the op is exact).</summary>
public sealed class NnKernelsTests
{
    public static TheoryData<string> Devices => Backends.Names();

    public static TheoryData<string, bool, bool, int, int, int> MatMulCases()
    {
        var data = new TheoryData<string, bool, bool, int, int, int>();
        foreach (var device in Backends.Names())
            foreach (var (ta, tb) in new[] { (false, false), (true, false), (false, true), (true, true) })
                foreach (var (m, n, k) in new[] { (1, 1, 1), (3, 17, 5), (17, 3, 33), (8, 9, 1025) })
                    data.Add(device, ta, tb, m, n, k);
        return data;
    }

    [Theory]
    [MemberData(nameof(MatMulCases))]
    public void MatMul_AnyTransposition_MatchesDoubleReference(string device, bool transposeA, bool transposeB, int m, int n, int k)
    {
        var acc = Backends.Get(device);
        var a = DeviceData.Random(m * k, 1);
        var b = DeviceData.Random(k * n, 2);
        using var da = DeviceData.Upload(acc, a);
        using var db = DeviceData.Upload(acc, b);
        using var dc = acc.Allocate((long)m * n * sizeof(float));
        NnKernels.For(acc).MatMul(transposeA, transposeB, m, n, k, da, db, dc);
        var c = DeviceData.Download(dc, m * n);
        for (var i = 0; i < m; i++)
        {
            for (var j = 0; j < n; j++)
            {
                double sum = 0, magnitude = 0;
                for (var p = 0; p < k; p++)
                {
                    double av = transposeA ? a[p * m + i] : a[i * k + p];
                    double bv = transposeB ? b[j * k + p] : b[p * n + j];
                    sum += av * bv;
                    magnitude += Math.Abs(av * bv);
                }
                Assert.True(Math.Abs(c[i * n + j] - sum) <= 1e-6 * magnitude + 1e-7,
                    $"C[{i},{j}] = {c[i * n + j]}, reference {sum} (|terms| {magnitude}).");
            }
        }
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void MatMul_LargeCpuProduct_SplitOverRowsAndVectorized_EqualsTheScalarAscendingSum(bool transposeA, bool transposeB)
    {
        // Large enough for the CPU kernel's parallel, vectorized path; n is not a multiple of the vector width.
        var acc = Backends.Get("cpu");
        const int m = 64, n = 259, k = 301;
        var a = DeviceData.Random(m * k, 41);
        var b = DeviceData.Random(k * n, 42);
        using var da = DeviceData.Upload(acc, a);
        using var db = DeviceData.Upload(acc, b);
        using var dc = acc.Allocate(m * n * sizeof(float));
        NnKernels.For(acc).MatMul(transposeA, transposeB, m, n, k, da, db, dc);
        var c = DeviceData.Download(dc, m * n);
        for (var i = 0; i < m; i++)
            for (var j = 0; j < n; j++)
            {
                var sum = 0f;   // the documented order: p ascending from 0, float32, no fused multiply-add
                for (var p = 0; p < k; p++)
                {
                    var product = (transposeA ? a[p * m + i] : a[i * k + p]) * (transposeB ? b[j * k + p] : b[p * n + j]);
                    sum += product;
                }
                Assert.True(BitConverter.SingleToInt32Bits(sum) == BitConverter.SingleToInt32Bits(c[i * n + j]), $"C[{i},{j}] = {c[i * n + j]:R}, ascending sum {sum:R}.");
            }
    }

    [Theory]
    [MemberData(nameof(Devices))]
    public void MatMul_RunTwice_BitIdentical(string device)
    {
        var acc = Backends.Get(device);
        const int m = 7, n = 11, k = 4099;
        using var da = DeviceData.Upload(acc, DeviceData.Random(m * k, 3));
        using var db = DeviceData.Upload(acc, DeviceData.Random(k * n, 4));
        using var c1 = acc.Allocate(m * n * sizeof(float));
        using var c2 = acc.Allocate(m * n * sizeof(float));
        NnKernels.For(acc).MatMul(false, false, m, n, k, da, db, c1);
        NnKernels.For(acc).MatMul(false, false, m, n, k, da, db, c2);
        Assert.Equal(DeviceData.Download(c1, m * n), DeviceData.Download(c2, m * n));
    }

    [Theory]
    [MemberData(nameof(Devices))]
    public void BiasAddAndBiasGrad_MatchReference(string device)
    {
        var acc = Backends.Get(device);
        const int rows = 13, cols = 17;
        var x = DeviceData.Random(rows * cols, 5);
        var bias = DeviceData.Random(cols, 6);
        using var dx = DeviceData.Upload(acc, x);
        using var dbias = DeviceData.Upload(acc, bias);
        using var dgrad = acc.Allocate(cols * sizeof(float));
        var kernels = NnKernels.For(acc);
        kernels.BiasAdd(rows, cols, dx, dbias);
        var y = DeviceData.Download(dx, rows * cols);
        for (var i = 0; i < rows * cols; i++) Assert.Equal(x[i] + bias[i % cols], y[i]);   // one float add: exact

        kernels.BiasGrad(rows, cols, dx, dgrad);
        var g = DeviceData.Download(dgrad, cols);
        for (var c = 0; c < cols; c++)
        {
            var sum = 0f;   // same order as the kernel: exact
            for (var r = 0; r < rows; r++) sum += y[r * cols + c];
            Assert.Equal(sum, g[c]);
        }
    }

    [Theory]
    [MemberData(nameof(Devices))]
    public void Activations_AndTheirGradients_MatchReference(string device)
    {
        var acc = Backends.Get(device);
        const int count = 1025;
        var z = DeviceData.Random(count, 7, scale: 3f);
        var upstream = DeviceData.Random(count, 8);
        var kernels = NnKernels.For(acc);

        using (var relu = DeviceData.Upload(acc, z))
        using (var dy = DeviceData.Upload(acc, upstream))
        {
            kernels.Activate(Activation.Relu, count, relu);
            kernels.ActivationGrad(Activation.Relu, count, relu, dy);
            var y = DeviceData.Download(relu, count);
            var d = DeviceData.Download(dy, count);
            for (var i = 0; i < count; i++)
            {
                Assert.Equal(Math.Max(z[i], 0f), y[i]);
                Assert.Equal(z[i] > 0 ? upstream[i] : 0f, d[i]);
            }
        }

        using (var tanh = DeviceData.Upload(acc, z))
        using (var dy = DeviceData.Upload(acc, upstream))
        {
            kernels.Activate(Activation.Tanh, count, tanh);
            kernels.ActivationGrad(Activation.Tanh, count, tanh, dy);
            var y = DeviceData.Download(tanh, count);
            var d = DeviceData.Download(dy, count);
            for (var i = 0; i < count; i++)
            {
                var t = Math.Tanh(z[i]);
                Assert.True(Math.Abs(y[i] - t) <= 4e-7, $"tanh({z[i]}) = {y[i]}, reference {t}.");
                Assert.True(Math.Abs(d[i] - upstream[i] * (1 - t * t)) <= 2e-6, $"tanh' at {z[i]}: {d[i]}.");
            }
        }

        using (var linear = DeviceData.Upload(acc, z))
        {
            kernels.Activate(Activation.Linear, count, linear);
            Assert.Equal(z, DeviceData.Download(linear, count));
        }
    }

    [Theory]
    [MemberData(nameof(Devices))]
    public void MeanSquaredError_LossAndGradient_MatchReference(string device)
    {
        var acc = Backends.Get(device);
        const int count = 97;
        var p = DeviceData.Random(count, 9);
        var t = DeviceData.Random(count, 10);
        using var dp = DeviceData.Upload(acc, p);
        using var dt = DeviceData.Upload(acc, t);
        using var dg = acc.Allocate(count * sizeof(float));
        using var dl = acc.Allocate(sizeof(float));
        NnKernels.For(acc).MeanSquaredError(count, dp, dt, dg, dl);
        var g = DeviceData.Download(dg, count);
        var loss = DeviceData.Download(dl, 1)[0];
        double reference = 0;
        for (var i = 0; i < count; i++)
        {
            double d = (double)p[i] - t[i];
            reference += d * d;
            Assert.True(Math.Abs(g[i] - 2 * d / count) <= 1e-7, $"grad[{i}] = {g[i]}, reference {2 * d / count}.");
        }
        reference /= count;
        Assert.True(Math.Abs(loss - reference) <= 1e-6 * reference, $"loss {loss}, reference {reference}.");
    }

    [Theory]
    [MemberData(nameof(Devices))]
    public void SgdUpdate_PlainAndMomentum_MatchFloatReference(string device)
    {
        var acc = Backends.Get(device);
        const int count = 33;
        const float lr = 0.05f, momentum = 0.9f;
        var v = DeviceData.Random(count, 11);
        var g = DeviceData.Random(count, 12);
        var a = DeviceData.Random(count, 13);
        var kernels = NnKernels.For(acc);
        using (var dv = DeviceData.Upload(acc, v))
        using (var dg = DeviceData.Upload(acc, g))
        {
            kernels.SgdUpdate(count, dv, dg, null, lr, 0f);
            var result = DeviceData.Download(dv, count);
            for (var i = 0; i < count; i++) Assert.Equal(v[i] - g[i] * lr, result[i]);
        }
        using (var dv = DeviceData.Upload(acc, v))
        using (var dg = DeviceData.Upload(acc, g))
        using (var da = DeviceData.Upload(acc, a))
        {
            kernels.SgdUpdate(count, dv, dg, da, lr, momentum);
            var result = DeviceData.Download(dv, count);
            var accum = DeviceData.Download(da, count);
            for (var i = 0; i < count; i++)
            {
                var expectedAccum = a[i] * momentum - g[i] * lr;
                Assert.Equal(expectedAccum, accum[i]);
                Assert.Equal(v[i] + expectedAccum, result[i]);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Devices))]
    public void AdamUpdate_MatchesDoubleReference(string device)
    {
        var acc = Backends.Get(device);
        const int count = 65;
        const float alpha = 0.003f, beta1 = 0.9f, beta2 = 0.999f, epsilon = 1e-7f;
        var v = DeviceData.Random(count, 14);
        var g = DeviceData.Random(count, 15);
        var m = DeviceData.Random(count, 16, 0.1f);
        var s = DeviceData.Random(count, 17, 0.01f).Select(Math.Abs).ToArray();
        using var dv = DeviceData.Upload(acc, v);
        using var dg = DeviceData.Upload(acc, g);
        using var dm = DeviceData.Upload(acc, m);
        using var ds = DeviceData.Upload(acc, s);
        NnKernels.For(acc).AdamUpdate(count, dv, dm, ds, dg, alpha, beta1, beta2, epsilon);
        var rv = DeviceData.Download(dv, count);
        var rm = DeviceData.Download(dm, count);
        var rs = DeviceData.Download(ds, count);
        for (var i = 0; i < count; i++)
        {
            double mi = m[i] + (g[i] - (double)m[i]) * (1 - (double)beta1);
            double si = s[i] + ((double)g[i] * g[i] - s[i]) * (1 - (double)beta2);
            double vi = v[i] - mi * alpha / (Math.Sqrt(si) + epsilon);
            Assert.True(Math.Abs(rm[i] - mi) <= 1e-7, $"m[{i}] = {rm[i]}, reference {mi}.");
            Assert.True(Math.Abs(rs[i] - si) <= 1e-7, $"v[{i}] = {rs[i]}, reference {si}.");
            Assert.True(Math.Abs(rv[i] - vi) <= 2e-6, $"var[{i}] = {rv[i]}, reference {vi}.");
        }
    }

    [Fact]
    public void MatMul_BufferTooSmall_Throws()
    {
        var acc = Backends.Get("cpu");
        using var a = acc.Allocate(4 * sizeof(float));
        using var b = acc.Allocate(4 * sizeof(float));
        using var c = acc.Allocate(3 * sizeof(float));
        Assert.Throws<ArgumentException>(() => NnKernels.For(acc).MatMul(false, false, 2, 2, 2, a, b, c));
        Assert.Throws<ArgumentException>(() => NnKernels.For(acc).MatMul(false, false, 1, 1, 1, a, b, a));
    }

    [OpenClFact]
    public void For_OpenClAccelerator_UsesOpenClKernelsAndCpuUsesCpu()
    {
        Assert.Equal("OpenCLNnKernels", NnKernels.For(Backends.Get("opencl")).GetType().Name);
        Assert.Equal("CpuNnKernels", NnKernels.For(Backends.Get("cpu")).GetType().Name);
        Assert.Same(NnKernels.For(Backends.Get("cpu")), NnKernels.For(Backends.Get("cpu")));
    }
}

using System.Runtime.InteropServices;
using CheckpointGpu.Devices;

namespace CheckpointGpu.Nn.Tests;

/// <summary>
/// The byte-level language model's kernels (embedding lookup, its scatter-add gradient, softmax cross-entropy) on every
/// backend against double-precision host references written here, and the whole model's analytic gradients against
/// central finite differences of an independent double-precision host implementation.
/// </summary>
public sealed class LanguageModelKernelsTests
{
    public static TheoryData<string> Devices => Backends.Names();

    private static DeviceBuffer UploadInts(Accelerator acc, int[] values)
    {
        var buffer = acc.Allocate(Math.Max(1, values.Length) * sizeof(int));
        var bytes = MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
        acc.DefaultStream.EnqueueCopyFromHost(bytes.AsMemory(), buffer.View(0, bytes.Length));
        acc.DefaultStream.Synchronize();
        return buffer;
    }

    [Theory]
    [MemberData(nameof(Devices))]
    public void EmbeddingLookup_CopiesTheRows_AndZerosForIdsOutsideTheTable(string device)
    {
        var acc = Backends.Get(device);
        const int vocabulary = 7, dimension = 5;
        int[] ids = [3, 0, 6, 3, -1, 7, 2, 6, 6];
        var table = DeviceData.Random(vocabulary * dimension, 21);
        using var dids = UploadInts(acc, ids);
        using var dtable = DeviceData.Upload(acc, table);
        using var dout = DeviceData.Upload(acc, Enumerable.Repeat(99f, ids.Length * dimension).ToArray());
        NnKernels.For(acc).EmbeddingLookup(ids.Length, dimension, vocabulary, dids, dtable, dout);
        var output = DeviceData.Download(dout, ids.Length * dimension);
        for (var i = 0; i < ids.Length; i++)
            for (var d = 0; d < dimension; d++)
            {
                var expected = ids[i] is >= 0 and < vocabulary ? table[ids[i] * dimension + d] : 0f;
                Assert.Equal(expected, output[i * dimension + d]);   // a copy: exact
            }
    }

    [Theory]
    [MemberData(nameof(Devices))]
    public void EmbeddingGrad_RepeatedIds_SumsInAscendingOrder_AndMatchesDoubleReference(string device)
    {
        var acc = Backends.Get(device);
        const int vocabulary = 11, dimension = 6, count = 301;
        var rng = new Random(5);
        // Heavy repetition (most rows receive ~30 terms), two unused rows, and ids outside the table that must be skipped.
        var ids = Enumerable.Range(0, count).Select(_ => rng.Next(-1, vocabulary - 1)).ToArray();
        ids[17] = vocabulary;
        var upstream = DeviceData.Random(count * dimension, 22, scale: 10f);
        using var dids = UploadInts(acc, ids);
        using var dgrad = DeviceData.Upload(acc, upstream);
        using var dtable = DeviceData.Upload(acc, Enumerable.Repeat(42f, vocabulary * dimension).ToArray());
        var kernels = NnKernels.For(acc);
        kernels.EmbeddingGrad(count, dimension, vocabulary, dids, dgrad, dtable);
        var result = DeviceData.Download(dtable, vocabulary * dimension);

        for (var v = 0; v < vocabulary; v++)
            for (var d = 0; d < dimension; d++)
            {
                double reference = 0, magnitude = 0;
                var ordered = 0f;   // the documented order: ascending i, from 0, in float32
                for (var i = 0; i < count; i++)
                {
                    if (ids[i] != v) continue;
                    reference += upstream[i * dimension + d];
                    magnitude += Math.Abs(upstream[i * dimension + d]);
                    ordered += upstream[i * dimension + d];
                }
                var got = result[v * dimension + d];
                Assert.True(Math.Abs(got - reference) <= 1e-6 * magnitude + 1e-7, $"grad[{v},{d}] = {got}, reference {reference}.");
                Assert.True(BitConverter.SingleToInt32Bits(ordered) == BitConverter.SingleToInt32Bits(got),
                    $"grad[{v},{d}] = {got:R} is not the ascending-order float sum {ordered:R}: the reduction order is not the documented one.");
            }
        Assert.All(Enumerable.Range(0, dimension), d => Assert.Equal(0f, result[(vocabulary - 1) * dimension + d]));   // unused row

        using var again = acc.Allocate(vocabulary * dimension * sizeof(float));
        kernels.EmbeddingGrad(count, dimension, vocabulary, dids, dgrad, again);
        Assert.Equal(result, DeviceData.Download(again, vocabulary * dimension));
    }

    [Theory]
    [MemberData(nameof(Devices))]
    public void SoftmaxCrossEntropy_MatchesDoubleReference_AndFiniteDifferences(string device)
    {
        var acc = Backends.Get(device);
        const int rows = 9, classes = 256;
        var logits = DeviceData.Random(rows * classes, 23, scale: 4f);
        for (var j = 0; j < classes; j++) logits[2 * classes + j] += 80f;   // a row that overflows exp without the max shift
        var labels = Enumerable.Range(0, rows).Select(r => (r * 37 + 11) % classes).ToArray();
        using var dz = DeviceData.Upload(acc, logits);
        using var dy = UploadInts(acc, labels);
        using var dg = acc.Allocate(rows * classes * sizeof(float));
        using var dl = acc.Allocate(sizeof(float));
        var kernels = NnKernels.For(acc);
        kernels.SoftmaxCrossEntropy(rows, classes, dz, dy, dg, dl);
        var grad = DeviceData.Download(dg, rows * classes);
        var loss = DeviceData.Download(dl, 1)[0];

        var z = logits.Select(v => (double)v).ToArray();
        var reference = HostCrossEntropy(z, labels, rows, classes);
        Assert.True(Math.Abs(loss - reference) <= 1e-5 * Math.Abs(reference), $"loss {loss}, reference {reference}.");
        for (var i = 0; i < rows * classes; i++)
        {
            // Analytic (softmax − one-hot) / rows in double, and a central difference of the double loss.
            var r = i / classes;
            var j = i % classes;
            double max = double.NegativeInfinity, sum = 0;
            for (var c = 0; c < classes; c++) max = Math.Max(max, z[r * classes + c]);
            for (var c = 0; c < classes; c++) sum += Math.Exp(z[r * classes + c] - max);
            var analytic = (Math.Exp(z[i] - max) / sum - (j == labels[r] ? 1 : 0)) / rows;
            Assert.True(Math.Abs(grad[i] - analytic) <= 1e-6, $"grad[{r},{j}] = {grad[i]}, reference {analytic}.");
            if (j % 17 == 0 || j == labels[r])
            {
                const double h = 1e-4;
                var saved = z[i];
                z[i] = saved + h;
                var up = HostCrossEntropy(z, labels, rows, classes);
                z[i] = saved - h;
                var down = HostCrossEntropy(z, labels, rows, classes);
                z[i] = saved;
                var numeric = (up - down) / (2 * h);
                Assert.True(Math.Abs(grad[i] - numeric) <= 1e-5, $"grad[{r},{j}] = {grad[i]}, finite difference {numeric}.");
            }
        }

        using var dg2 = acc.Allocate(rows * classes * sizeof(float));
        using var dl2 = acc.Allocate(sizeof(float));
        kernels.SoftmaxCrossEntropy(rows, classes, dz, dy, dg2, dl2);
        Assert.Equal(grad, DeviceData.Download(dg2, rows * classes));
        Assert.Equal(BitConverter.SingleToInt32Bits(loss), BitConverter.SingleToInt32Bits(DeviceData.Download(dl2, 1)[0]));
    }

    [Theory]
    [MemberData(nameof(Devices))]
    public void SoftmaxCrossEntropy_LabelOutsideTheClasses_GivesNaN(string device)
    {
        var acc = Backends.Get(device);
        using var dz = DeviceData.Upload(acc, [0.5f, 1f, -1f, 2f, 0f, 0f]);
        using var dy = UploadInts(acc, [1, 3]);
        using var dg = acc.Allocate(6 * sizeof(float));
        using var dl = acc.Allocate(sizeof(float));
        NnKernels.For(acc).SoftmaxCrossEntropy(2, 3, dz, dy, dg, dl);
        var grad = DeviceData.Download(dg, 6);
        Assert.True(float.IsNaN(DeviceData.Download(dl, 1)[0]));
        Assert.All(grad[..3], g => Assert.False(float.IsNaN(g)));
        Assert.All(grad[3..], g => Assert.True(float.IsNaN(g)));
    }

    [Fact]
    public void Kernels_RejectBadArguments()
    {
        var acc = Backends.Get("cpu");
        using var small = acc.Allocate(4 * sizeof(float));
        using var big = acc.Allocate(64 * sizeof(float));
        var k = NnKernels.For(acc);
        Assert.Throws<ArgumentException>(() => k.EmbeddingLookup(5, 2, 3, small, big, big));          // ids too small
        Assert.Throws<ArgumentException>(() => k.EmbeddingGrad(2, 2, 3, small, big, big));            // aliasing
        Assert.Throws<ArgumentOutOfRangeException>(() => k.SoftmaxCrossEntropy(0, 3, big, small, big, small));
        Assert.Throws<ArgumentException>(() => k.SoftmaxCrossEntropy(2, 3, big, small, big, small));   // grad aliases logits
    }

    [Theory]
    [MemberData(nameof(Devices))]
    public void ByteLanguageModel_AnalyticGradients_MatchFiniteDifferences(string device)
    {
        var acc = Backends.Get(device);
        const int batch = 3, context = 2, dimension = 3, hidden = 4, vocabulary = 256;
        using var embedding = new Embedding(acc, vocabulary, dimension, seed: 3, initializer: VariableInitializer.FromHost(bytes =>
        {
            // Larger than Keras' ±0.05 so the finite differences see well-conditioned activations.
            var values = MemoryMarshal.Cast<byte, float>(bytes);
            var rng = new Random(31);
            for (var i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() * 2 - 1);
        }));
        embedding.Build();
        using var h = new Dense(acc, hidden, Activation.Tanh, seed: 4);
        using var o = new Dense(acc, vocabulary, seed: 5);
        h.Build(context * dimension);
        o.Build(hidden);
        using var sgd = new Sgd(acc);
        using var trainer = new ByteLanguageModelTrainer(embedding, [h, o], sgd, batch, context);
        // Byte 'a' twice in one context and again in another row: the table gradient must add the repeated rows.
        byte[] data = [(byte)'a', (byte)'a', (byte)'b', (byte)'q', (byte)'a', (byte)'z', 0xFF, 7, 0];
        var loss = trainer.ComputeGradients(data);

        var parameters = new[]
        {
            embedding.Embeddings!.Read<float>().Select(v => (double)v).ToArray(),
            h.Kernel!.Read<float>().Select(v => (double)v).ToArray(), h.Bias!.Read<float>().Select(v => (double)v).ToArray(),
            o.Kernel!.Read<float>().Select(v => (double)v).ToArray(), o.Bias!.Read<float>().Select(v => (double)v).ToArray(),
        };
        double Loss() => HostLanguageModelLoss(parameters, data, batch, context, dimension, hidden, vocabulary);
        Assert.True(Math.Abs(loss - Loss()) <= 1e-5 * Math.Max(1, Loss()), $"device loss {loss}, host {Loss()}.");

        for (var p = 0; p < parameters.Length; p++)
        {
            var analytic = DeviceData.Download(trainer.Gradients[p].Value, parameters[p].Length);
            // The table: check every row the batch uses and a few it does not (their gradient is exactly 0).
            IEnumerable<int> indices = p == 0
                ? new[] { 'a', 'b', 'q', 'z', 0xFF, 7, 0, 1, 200 }.SelectMany(row => Enumerable.Range(row * dimension, dimension))
                : Enumerable.Range(0, parameters[p].Length).Where(i => parameters[p].Length < 64 || i % 7 == 0);
            foreach (var i in indices)
            {
                const double step = 1e-5;
                var saved = parameters[p][i];
                parameters[p][i] = saved + step;
                var up = Loss();
                parameters[p][i] = saved - step;
                var down = Loss();
                parameters[p][i] = saved;
                var numeric = (up - down) / (2 * step);
                Assert.True(Math.Abs(analytic[i] - numeric) <= 1e-4 * Math.Max(1, Math.Abs(numeric)),
                    $"{trainer.Gradients[p].Variable.Name}[{i}]: analytic {analytic[i]}, numeric {numeric}.");
            }
        }
    }

    [Fact]
    public void ByteLanguageModel_CpuAndIlgpuCpu_ComputeBitIdenticalGradients()
    {
        float[][] Gradients(string device)
        {
            var acc = Backends.Get(device);
            using var embedding = new Embedding(acc, 256, 4, seed: 8);
            embedding.Build();
            using var h = new Dense(acc, 8, Activation.Tanh, seed: 9);
            using var o = new Dense(acc, 256, seed: 10);
            h.Build(3 * 4);
            o.Build(8);
            using var sgd = new Sgd(acc);
            using var trainer = new ByteLanguageModelTrainer(embedding, [h, o], sgd, 5, 3);
            trainer.ComputeGradients("the quick brown fox."u8);
            return trainer.Gradients.Select(g => DeviceData.Download(g.Value, (int)g.Variable.Shape.ElementCount)).ToArray();
        }
        var cpu = Gradients("cpu");
        var ilgpu = Gradients("ilgpu-cpu");
        for (var i = 0; i < cpu.Length; i++) Assert.Equal(cpu[i], ilgpu[i]);
    }

    private static double HostCrossEntropy(double[] z, int[] labels, int rows, int classes)
    {
        double total = 0;
        for (var r = 0; r < rows; r++)
        {
            double max = double.NegativeInfinity, sum = 0;
            for (var c = 0; c < classes; c++) max = Math.Max(max, z[r * classes + c]);
            for (var c = 0; c < classes; c++) sum += Math.Exp(z[r * classes + c] - max);
            total += Math.Log(sum) + max - z[r * classes + labels[r]];
        }
        return total / rows;
    }

    /// <summary>Embedding → concat → tanh dense → linear dense → mean sparse softmax cross-entropy, in double.</summary>
    private static double HostLanguageModelLoss(double[][] p, byte[] data, int batch, int context, int dimension, int hidden, int vocabulary)
    {
        var (table, k1, b1, k2, b2) = (p[0], p[1], p[2], p[3], p[4]);
        var inputs = context * dimension;
        var logits = new double[batch * vocabulary];
        var labels = new int[batch];
        for (var r = 0; r < batch; r++)
        {
            var x = new double[inputs];
            for (var c = 0; c < context; c++)
                for (var d = 0; d < dimension; d++) x[c * dimension + d] = table[data[r * (context + 1) + c] * dimension + d];
            labels[r] = data[r * (context + 1) + context];
            var a = new double[hidden];
            for (var j = 0; j < hidden; j++)
            {
                var s = b1[j];
                for (var i = 0; i < inputs; i++) s += x[i] * k1[i * hidden + j];
                a[j] = Math.Tanh(s);
            }
            for (var j = 0; j < vocabulary; j++)
            {
                var s = b2[j];
                for (var i = 0; i < hidden; i++) s += a[i] * k2[i * vocabulary + j];
                logits[r * vocabulary + j] = s;
            }
        }
        return HostCrossEntropy(logits, labels, batch, vocabulary);
    }
}

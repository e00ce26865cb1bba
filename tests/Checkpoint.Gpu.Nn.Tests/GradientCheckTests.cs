namespace CheckpointGpu.Nn.Tests;

/// <summary>
/// The MLP's analytic gradients (device kernels, float32) against central finite differences of an independent
/// double-precision host implementation of the same network and loss.
/// </summary>
public sealed class GradientCheckTests
{
    public static TheoryData<string, Activation> Cases()
    {
        var data = new TheoryData<string, Activation>();
        foreach (var device in Backends.Names())
        {
            data.Add(device, Activation.Tanh);
            data.Add(device, Activation.Relu);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Mlp_AnalyticGradients_MatchFiniteDifferences(string device, Activation activation)
    {
        var acc = Backends.Get(device);
        using var model = Mlp.CreateSequential(acc, 3, [4, 5], 2, activation, seed: 11);
        using var sgd = new Sgd(acc);
        var task = new RegressionTask(3, 2, 6, seed: 5);
        using var trainer = new MlpTrainer(model.DenseLayers, sgd, task);
        var loss = trainer.ComputeGradients(batchIndex: 7);

        var layers = model.DenseLayers;
        var parameters = layers.SelectMany(l => new[] { l.Kernel!.Read<float>().Select(v => (double)v).ToArray(), l.Bias!.Read<float>().Select(v => (double)v).ToArray() }).ToArray();
        var x = new float[6 * 3];
        var t = new float[6 * 2];
        task.FillBatch(7, x, t);
        double Loss() => HostLoss(layers.Select(l => (l.InputSize, l.Units, l.Activation)).ToArray(), parameters, x, t, 6);

        Assert.True(Math.Abs(loss - Loss()) <= 1e-5 * Math.Max(1, Loss()), $"device loss {loss}, host {Loss()}.");
        for (var p = 0; p < parameters.Length; p++)
        {
            var analytic = DeviceData.Download(trainer.Gradients[p].Value, parameters[p].Length);
            for (var i = 0; i < parameters[p].Length; i++)
            {
                const double h = 1e-5;
                var saved = parameters[p][i];
                parameters[p][i] = saved + h;
                var up = Loss();
                parameters[p][i] = saved - h;
                var down = Loss();
                parameters[p][i] = saved;
                var numeric = (up - down) / (2 * h);
                Assert.True(Math.Abs(analytic[i] - numeric) <= 1e-4 * Math.Max(1, Math.Abs(numeric)),
                    $"{trainer.Gradients[p].Variable.Name}[{i}]: analytic {analytic[i]}, numeric {numeric}.");
            }
        }
    }

    [Fact]
    public void Mlp_TrainingWithAdam_ReducesTheLoss()
    {
        var acc = Backends.Get("cpu");
        using var model = Mlp.CreateSequential(acc, 4, [16], 1, Activation.Tanh, seed: 1);
        using var adam = new Adam(acc, learningRate: 0.01f);
        using var trainer = new MlpTrainer(model.DenseLayers, adam, new RegressionTask(4, 1, 32, seed: 2));
        var first = trainer.Evaluate(1000);
        for (var i = 0; i < 200; i++) trainer.TrainStep();
        var last = trainer.Evaluate(1000);
        Assert.True(last < first * 0.5, $"held-out loss {first} → {last}");
        Assert.Equal(200L, adam.Iterations.Read<long>()[0]);
    }

    private static double HostLoss((int In, int Out, Activation Act)[] layers, double[][] parameters, float[] x, float[] t, int batch)
    {
        var a = x.Select(v => (double)v).ToArray();
        for (var l = 0; l < layers.Length; l++)
        {
            var (inSize, outSize, act) = layers[l];
            var kernel = parameters[2 * l];
            var bias = parameters[2 * l + 1];
            var y = new double[batch * outSize];
            for (var r = 0; r < batch; r++)
                for (var j = 0; j < outSize; j++)
                {
                    var s = bias[j];
                    for (var i = 0; i < inSize; i++) s += a[r * inSize + i] * kernel[i * outSize + j];
                    y[r * outSize + j] = act switch { Activation.Relu => Math.Max(s, 0), Activation.Tanh => Math.Tanh(s), _ => s };
                }
            a = y;
        }
        double sum = 0;
        for (var i = 0; i < a.Length; i++) sum += (a[i] - t[i]) * (a[i] - t[i]);
        return sum / a.Length;
    }
}

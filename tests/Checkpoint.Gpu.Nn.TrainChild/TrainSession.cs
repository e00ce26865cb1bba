using System.Globalization;
using CheckpointGpu.Devices;

namespace CheckpointGpu.Nn.TrainChild;

/// <summary>
/// The determinism recipe shared by the test (straight run, first half) and the child process (second half): a
/// 5→16→16→1 tanh MLP on a seeded regression task, tracked as <c>Checkpoint(model=…, optimizer=…)</c>. With
/// <c>restoreFrom</c> the checkpoint is restored BEFORE the model and optimizer exist, so every value arrives by
/// restore-on-create (layer variables at <c>Build</c>, Keras 2 slots at the first step, Keras 3 moments at the
/// optimizer's lazy build).
/// </summary>
public sealed class TrainSession : IDisposable
{
    public const int InputSize = 5;
    public const int BatchSize = 32;

    private TrainSession(Accelerator accelerator, Checkpoint checkpoint, Sequential model, Optimizer optimizer, MlpTrainer trainer, LoadStatus? status)
    {
        Accelerator = accelerator;
        Checkpoint = checkpoint;
        Model = model;
        Optimizer = optimizer;
        Trainer = trainer;
        Status = status;
    }

    public Accelerator Accelerator { get; }
    public Checkpoint Checkpoint { get; }
    public Sequential Model { get; }
    public Optimizer Optimizer { get; }
    public MlpTrainer Trainer { get; }
    public LoadStatus? Status { get; }

    public static TrainSession Create(AcceleratorKind device, KerasNaming naming, string optimizer, ulong seed, string? restoreFrom)
    {
        var accelerator = Accelerator.Create(device);
        var checkpoint = new Checkpoint { Log = null };
        var status = restoreFrom is null ? null : checkpoint.Restore(restoreFrom);
        var model = Mlp.CreateSequential(accelerator, InputSize, [16, 16], 1, Activation.Tanh, seed, naming, build: false);
        checkpoint.Track("model", model);
        Optimizer opt = optimizer switch
        {
            "adam" => new Adam(accelerator, naming, learningRate: 0.01f),
            "sgd" => new Sgd(accelerator, naming, learningRate: 0.05f, momentum: 0.9f),
            _ => throw new ArgumentException($"Unknown optimizer '{optimizer}'.", nameof(optimizer)),
        };
        checkpoint.Track("optimizer", opt);
        model.Build(InputSize);
        var trainer = new MlpTrainer(model.DenseLayers, opt, new RegressionTask(InputSize, 1, BatchSize, seed));
        return new TrainSession(accelerator, checkpoint, model, opt, trainer, status);
    }

    /// <summary>Trains <paramref name="steps"/> steps; returns the losses.</summary>
    public float[] Train(int steps)
    {
        var losses = new float[steps];
        for (var i = 0; i < steps; i++) losses[i] = Trainer.TrainStep();
        return losses;
    }

    public static string Format(float value) => BitConverter.SingleToInt32Bits(value).ToString("x8", CultureInfo.InvariantCulture);

    public void Dispose()
    {
        Trainer.Dispose();
        Checkpoint.Dispose();
        Model.Dispose();
        Optimizer.Dispose();
        Accelerator.Dispose();
    }
}

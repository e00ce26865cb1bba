using CheckpointGpu.Devices;
using CheckpointGpu.Format;

namespace CheckpointGpu.Tests;

/// <summary>A Keras-style Dense layer whose variables are created by <see cref="Build"/> (lazily, as Keras does).</summary>
internal sealed class DenseLayer : AutoTrackable
{
    private readonly Accelerator _accelerator;
    private readonly string _kernelEdge;
    private readonly string _fullNamePrefix;

    public DenseLayer(Accelerator accelerator, int inputs, int units, string fullNamePrefix, bool keras3 = false, bool build = true)
    {
        _accelerator = accelerator;
        Inputs = inputs;
        Units = units;
        _fullNamePrefix = fullNamePrefix;
        _kernelEdge = keras3 ? "_kernel" : "kernel";
        if (build) Build();
    }

    public int Inputs { get; }
    public int Units { get; }
    public Variable? Kernel { get; private set; }
    public Variable? Bias { get; private set; }

    public void Build()
    {
        Kernel = AddVariable(_kernelEdge, _accelerator, DType.Float, new TensorShape(Inputs, Units),
            VariableInitializer.Constant(0.25f), $"{_fullNamePrefix}/kernel");
        Bias = AddVariable("bias", _accelerator, DType.Float, new TensorShape(Units), null, $"{_fullNamePrefix}/bias");
    }

    public IEnumerable<Variable> Variables => new[] { Kernel, Bias }.Where(v => v is not null)!;
}

/// <summary>Keras 2 legacy Adam (OptimizerV2): hyper variables as dependencies, m/v as slot variables.</summary>
internal sealed class LegacyAdam : OptimizerBase
{
    private readonly bool _createSlotsOnRestore;

    public LegacyAdam(Accelerator accelerator, bool createSlotsOnRestore = true) : base("Adam")
    {
        _createSlotsOnRestore = createSlotsOnRestore;
        Iter = AddVariable("iter", accelerator, DType.Int64, TensorShape.Scalar, null, "Adam/iter");
        Beta1 = AddVariable("beta_1", accelerator, DType.Float, TensorShape.Scalar, VariableInitializer.Constant(0.9f), "Adam/beta_1");
        Beta2 = AddVariable("beta_2", accelerator, DType.Float, TensorShape.Scalar, VariableInitializer.Constant(0.999f), "Adam/beta_2");
        Decay = AddVariable("decay", accelerator, DType.Float, TensorShape.Scalar, null, "Adam/decay");
        LearningRate = AddVariable("learning_rate", accelerator, DType.Float, TensorShape.Scalar, VariableInitializer.Constant(0.001f), "Adam/learning_rate");
    }

    public Variable Iter { get; }
    public Variable Beta1 { get; }
    public Variable Beta2 { get; }
    public Variable Decay { get; }
    public Variable LearningRate { get; }

    protected override bool CreateSlotsOnRestore => _createSlotsOnRestore;

    /// <summary>What Keras' _create_slots does at the first apply_gradients: all m first, then all v.</summary>
    public void CreateSlots(IEnumerable<Variable> variables)
    {
        var list = variables.ToList();
        foreach (var v in list) AddSlot(v, "m");
        foreach (var v in list) AddSlot(v, "v");
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
            foreach (var v in new[] { Iter, Beta1, Beta2, Decay, LearningRate }) v.Dispose();
        base.Dispose(disposing);
    }
}

/// <summary>A Keras 2 Sequential model: edges layer-i / layer_with_weights-j and optionally optimizer.</summary>
internal sealed class Sequential : AutoTrackable
{
    public Sequential(IReadOnlyList<Trackable> layers, Trackable? optimizer = null, bool layerFirst = true)
    {
        Layers = layers;
        var withWeights = 0;
        for (var i = 0; i < layers.Count; i++)
        {
            var hasWeights = layers[i] is DenseLayer;
            if (layerFirst)
            {
                // TF 2.3-era tracking order (golf-dqn): layer-i, then layer_with_weights-j
                if (!hasWeights) { Track($"layer-{i}", layers[i]); continue; }
                Track($"layer_with_weights-{withWeights++}", layers[i]);
                Track($"layer-{i}", layers[i]);
            }
            else
            {
                if (hasWeights) Track($"layer_with_weights-{withWeights++}", layers[i]);
                Track($"layer-{i}", layers[i]);
            }
        }
        if (optimizer is not null) Track("optimizer", optimizer);
    }

    public IReadOnlyList<Trackable> Layers { get; }

    public IEnumerable<Variable> TrainableVariables => Layers.OfType<DenseLayer>().SelectMany(l => l.Variables);
}

/// <summary>A layer without weights (Keras InputLayer / Flatten).</summary>
internal sealed class EmptyLayer : AutoTrackable;

/// <summary>A Keras 3 model with attribute-tracked Dense layers fc1, fc2, q (declared through property setters).</summary>
internal sealed class Keras3Model : AutoTrackable
{
    private DenseLayer _fc1 = null!, _fc2 = null!, _q = null!;

    public Keras3Model(Accelerator accelerator, bool build)
    {
        Fc1 = new DenseLayer(accelerator, 5, 30, "compensator_network", keras3: true, build);
        Fc2 = new DenseLayer(accelerator, 30, 40, "compensator_network", keras3: true, build);
        Q = new DenseLayer(accelerator, 40, 1, "compensator_network", keras3: true, build);
    }

    public DenseLayer Fc1 { get => _fc1; set => _fc1 = Track(value, "fc1"); }
    public DenseLayer Fc2 { get => _fc2; set => _fc2 = Track(value, "fc2"); }
    public DenseLayer Q { get => _q; set => _q = Track(value, "q"); }

    public void Build() { Fc1.Build(); Fc2.Build(); Q.Build(); }

    public IEnumerable<Variable> TrainableVariables => new[] { Fc1, Fc2, Q }.SelectMany(l => l.Variables);
}

/// <summary>A Keras 3 Adam: no slots, state in tracked lists; moments created by <see cref="Build"/>.</summary>
internal sealed class Keras3Adam : AutoTrackable, IDisposable
{
    private readonly Accelerator _accelerator;

    public Keras3Adam(Accelerator accelerator)
    {
        _accelerator = accelerator;
        // Keras 3 BaseOptimizer.__init__ attribute order.
        Variables = Track("_variables", new TrackableList<Variable>());
        TrainableVariables = Track("_trainable_variables", new TrackableList<Variable>());
        Track("_trainable_variables_indices", new TrackableDictionary());
        Iterations = Variables.AddVariable(accelerator, DType.Int64, TensorShape.Scalar, null, "adam/iteration");
        Track("_iterations", Iterations);
        LearningRate = Variables.AddVariable(accelerator, DType.Float, TensorShape.Scalar, VariableInitializer.Constant(0.001f), "adam/learning_rate");
        Track("_learning_rate", LearningRate);
        Momentums = Track("_momentums", new TrackableList<Variable>());
        Velocities = Track("_velocities", new TrackableList<Variable>());
    }

    public TrackableList<Variable> Variables { get; }
    public TrackableList<Variable> TrainableVariables { get; }
    public TrackableList<Variable> Momentums { get; }
    public TrackableList<Variable> Velocities { get; }
    public Variable Iterations { get; }
    public Variable LearningRate { get; }

    /// <summary>Keras 3 Adam.build: momentum and velocity per trainable variable, interleaved in _variables.</summary>
    public void Build(IEnumerable<Variable> trainable, IReadOnlyList<string> layerNames)
    {
        var i = 0;
        foreach (var v in trainable)
        {
            TrainableVariables.Add(v);
            var baseName = $"adam/compensator_network_{layerNames[i / 2]}_{(v.Name.EndsWith("kernel", StringComparison.Ordinal) ? "kernel" : "bias")}";
            var m = Variables.AddVariable(_accelerator, v.DType, v.Shape, null, baseName + "_momentum");
            Momentums.Add(m);
            var vel = Variables.AddVariable(_accelerator, v.DType, v.Shape, null, baseName + "_velocity");
            Velocities.Add(vel);
            i++;
        }
    }

    public void Dispose()
    {
        foreach (var v in Variables) v.Dispose();
    }
}

/// <summary>Custom non-variable state saved like TF's PythonState (a data-iterator position).</summary>
internal sealed class IteratorState : TrackableState
{
    public long Position { get; set; }
    public string Epoch { get; set; } = "";

    public override HostTensor Serialize() => HostTensor.FromString($"{Position};{Epoch}");

    public override void Deserialize(HostTensor value)
    {
        var parts = value.GetString().Split(';');
        Position = long.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture);
        Epoch = parts[1];
    }
}

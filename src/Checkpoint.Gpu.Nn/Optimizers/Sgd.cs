using CheckpointGpu.Devices;

namespace CheckpointGpu.Nn;

/// <summary>
/// Stochastic gradient descent with optional (non-Nesterov) momentum, float32:
/// without momentum <c>var −= g · lr</c>; with momentum <c>accum = accum · μ − g · lr; var += accum</c>
/// (TF <c>ResourceApplyKerasMomentum</c>; Keras 3's <c>m = −g·lr + m·μ; var += m</c> rounds identically).
/// </summary>
/// <remarks>
/// <para><b>Keras 2 legacy</b>: edges <c>iter</c>, <c>decay</c>, <c>learning_rate</c>, <c>momentum</c> (sorted, as
/// observed in <c>sm-tf25-module-sgd-momentum</c>); μ is read from the <c>momentum</c> variable; slot <c>momentum</c>
/// (only when the constructor's momentum is positive, as Keras), created lazily at the first step.</para>
/// <para><b>Keras 3</b>: μ is the constructor value; state list <c>momentums</c> (Keras 3 <c>SGD.build</c>; this
/// attribute name is from the Keras source, not observed in a TF-written file), names <c>…_momentum</c>.</para>
/// </remarks>
public sealed class Sgd : Optimizer
{
    private readonly List<Variable> _momentums = [];
    private float _learningRate;
    private float _momentum;

    /// <summary>Creates the optimizer.</summary>
    /// <param name="accelerator">Accelerator for the counter and hyperparameter variables.</param>
    /// <param name="naming">Checkpoint layout.</param>
    /// <param name="learningRate">Learning rate (Keras default 0.01).</param>
    /// <param name="momentum">Momentum μ in [0, 1] (0 = plain SGD, no momentum state).</param>
    /// <param name="decay">Keras 2 only: inverse-time learning-rate decay.</param>
    /// <param name="name">Name; <see langword="null"/> means <c>SGD</c>.</param>
    /// <exception cref="ArgumentOutOfRangeException">A hyperparameter is out of range.</exception>
    public Sgd(Accelerator accelerator, KerasNaming naming = KerasNaming.Keras2, float learningRate = 0.01f, float momentum = 0f,
        float decay = 0f, string? name = null)
        : base(accelerator, name ?? "SGD", naming, learningRate,
            naming == KerasNaming.Keras2 ? [("decay", decay), ("momentum", momentum)] : [])
    {
        ArgumentOutOfRangeException.ThrowIfNegative(learningRate);
        if (momentum is < 0f or > 1f) throw new ArgumentOutOfRangeException(nameof(momentum), momentum, "Momentum must be in [0, 1].");
        ArgumentOutOfRangeException.ThrowIfNegative(decay);
        Momentum = momentum;
        Decay = decay;
    }

    /// <summary>Constructor momentum μ.</summary>
    public float Momentum { get; }

    /// <summary>Keras 2 learning-rate decay.</summary>
    public float Decay { get; }

    /// <summary>Keras 3: momentum accumulators in model-variable order; empty without momentum.</summary>
    public IReadOnlyList<Variable> Momentums => _momentums;

    private bool HasMomentum => Momentum > 0f;

    private protected override void CreateSlots(IReadOnlyList<Variable> variables)
    {
        if (!HasMomentum) return;
        foreach (var v in variables) GetOrAddSlot(v, "momentum");
    }

    private protected override void BuildKeras3State(IReadOnlyList<Variable> variables)
    {
        if (!HasMomentum) return;
        foreach (var v in variables) _momentums.Add(AddKeras3StateVariable(v, "momentum"));
        TrackKeras3List("momentums", _momentums);
    }

    private protected override void PrepareScalars(long iterations)
    {
        _learningRate = ReadSingle(LearningRate);
        if (Naming == KerasNaming.Keras2)
        {
            _momentum = ReadSingle(GetHyperVariable("momentum"));
            if (Decay > 0f) _learningRate /= 1f + Decay * iterations;
        }
        else
        {
            _momentum = Momentum;
        }
    }

    private protected override void UpdateVariable(Variable variable, DeviceBuffer gradient)
    {
        Variable? momentum = null;
        if (HasMomentum)
            momentum = Naming == KerasNaming.Keras2 ? GetOrAddSlot(variable, "momentum") : _momentums[IndexOf(variable)];
        NnKernels.For(variable.Accelerator).SgdUpdate(checked((int)variable.ElementCount), variable.Buffer, gradient, momentum?.Buffer, _learningRate, _momentum);
        // Change tracking (Variable.ChangeTracking.cs): the kernel wrote the variable and its momentum.
        variable.MarkModified();
        momentum?.MarkModified();
    }

    private protected override IEnumerable<Variable> GetStateVariables(Variable variable)
    {
        if (!HasMomentum) return [];
        return Naming == KerasNaming.Keras2 ? [GetOrAddSlot(variable, "momentum")] : [_momentums[IndexOf(variable)]];
    }
}

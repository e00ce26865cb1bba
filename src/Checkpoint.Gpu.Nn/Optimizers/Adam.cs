using CheckpointGpu.Devices;

namespace CheckpointGpu.Nn;

/// <summary>
/// Adam (Kingma and Ba), float32, TF/Keras-faithful: with <c>t = iterations + 1</c>,
/// <c>alpha = lr · √(1 − β2ᵗ) / (1 − β1ᵗ)</c> (host, float32, <c>MathF.Pow</c>),
/// then per element <c>m += (g − m)(1 − β1)</c>, <c>v += (g² − v)(1 − β2)</c>, <c>var −= (m · alpha) / (√v + ε)</c>.
/// </summary>
/// <remarks>
/// <para><b>Keras 2 legacy</b> (<c>OptimizerV2.Adam</c> → <c>ResourceApplyAdam</c>): β1 and β2 are read from the
/// <c>beta_1</c>/<c>beta_2</c> variables; the learning rate is <c>learning_rate</c> divided by
/// <c>1 + decay · iterations</c> when the constructor's <c>decay</c> is positive (Keras uses the Python value, not the
/// variable); slots <c>m</c> then <c>v</c> are created lazily at the first step (all <c>m</c> first, as
/// <c>_create_slots</c>). ε is the constructor value (Keras' <c>epsilon</c> is a Python float). No amsgrad.</para>
/// <para><b>Keras 3</b> (<c>keras.optimizers.Adam.update_step</c>): the same arithmetic (its
/// <c>m.assign_add((g − m)(1 − β1))</c> form); β1, β2, ε are constructor values; state
/// <c>_variables/2…</c> interleaves momentum and velocity per variable; lists <c>_momentums</c>, <c>_velocities</c>.</para>
/// <para>See <see cref="Optimizer"/> for the checkpoint layout and thread-safety.</para>
/// </remarks>
public sealed class Adam : Optimizer
{
    private readonly List<Variable> _momentums = [];
    private readonly List<Variable> _velocities = [];
    private float _alpha;
    private float _beta1;
    private float _beta2;

    /// <summary>Creates the optimizer and its counter/hyperparameter variables.</summary>
    /// <param name="accelerator">Accelerator for the counter and hyperparameter variables.</param>
    /// <param name="naming">Checkpoint layout.</param>
    /// <param name="learningRate">Learning rate (Keras default 0.001).</param>
    /// <param name="beta1">β1 (0.9).</param>
    /// <param name="beta2">β2 (0.999).</param>
    /// <param name="epsilon">ε (Keras default 1e-7).</param>
    /// <param name="decay">Keras 2 only: inverse-time learning-rate decay (0).</param>
    /// <param name="name">Name; <see langword="null"/> means <c>Adam</c> (Keras 2) or <c>adam</c> (Keras 3).</param>
    /// <exception cref="ArgumentOutOfRangeException">A hyperparameter is out of range.</exception>
    public Adam(Accelerator accelerator, KerasNaming naming = KerasNaming.Keras2, float learningRate = 0.001f, float beta1 = 0.9f,
        float beta2 = 0.999f, float epsilon = 1e-7f, float decay = 0f, string? name = null)
        : base(accelerator, name ?? (naming == KerasNaming.Keras3 ? "adam" : "Adam"), naming, learningRate,
            naming == KerasNaming.Keras2 ? [("beta_1", beta1), ("beta_2", beta2), ("decay", decay)] : [])
    {
        ArgumentOutOfRangeException.ThrowIfNegative(learningRate);
        if (beta1 is < 0f or >= 1f) throw new ArgumentOutOfRangeException(nameof(beta1), beta1, "β1 must be in [0, 1).");
        if (beta2 is < 0f or >= 1f) throw new ArgumentOutOfRangeException(nameof(beta2), beta2, "β2 must be in [0, 1).");
        ArgumentOutOfRangeException.ThrowIfNegative(epsilon);
        ArgumentOutOfRangeException.ThrowIfNegative(decay);
        Beta1 = beta1;
        Beta2 = beta2;
        Epsilon = epsilon;
        Decay = decay;
    }

    /// <summary>Constructor β1 (Keras 3 uses it; Keras 2 reads the <c>beta_1</c> variable).</summary>
    public float Beta1 { get; }

    /// <summary>Constructor β2 (Keras 3 uses it; Keras 2 reads the <c>beta_2</c> variable).</summary>
    public float Beta2 { get; }

    /// <summary>ε.</summary>
    public float Epsilon { get; }

    /// <summary>Keras 2 learning-rate decay.</summary>
    public float Decay { get; }

    /// <summary>Keras 3: first moments in model-variable order (<c>_momentums</c>); empty before the state is built.</summary>
    public IReadOnlyList<Variable> Momentums => _momentums;

    /// <summary>Keras 3: second moments in model-variable order (<c>_velocities</c>).</summary>
    public IReadOnlyList<Variable> Velocities => _velocities;

    private protected override void CreateSlots(IReadOnlyList<Variable> variables)
    {
        foreach (var v in variables) GetOrAddSlot(v, "m");
        foreach (var v in variables) GetOrAddSlot(v, "v");
    }

    private protected override void BuildKeras3State(IReadOnlyList<Variable> variables)
    {
        foreach (var v in variables)
        {
            _momentums.Add(AddKeras3StateVariable(v, "momentum"));
            _velocities.Add(AddKeras3StateVariable(v, "velocity"));
        }
        TrackKeras3List("_momentums", _momentums);
        TrackKeras3List("_velocities", _velocities);
    }

    private protected override void PrepareScalars(long iterations)
    {
        var lr = ReadSingle(LearningRate);
        if (Naming == KerasNaming.Keras2)
        {
            _beta1 = ReadSingle(GetHyperVariable("beta_1"));
            _beta2 = ReadSingle(GetHyperVariable("beta_2"));
            if (Decay > 0f) lr /= 1f + Decay * iterations;
        }
        else
        {
            _beta1 = Beta1;
            _beta2 = Beta2;
        }
        var localStep = (float)(iterations + 1);
        var beta1Power = MathF.Pow(_beta1, localStep);
        var beta2Power = MathF.Pow(_beta2, localStep);
        _alpha = lr * MathF.Sqrt(1f - beta2Power) / (1f - beta1Power);
    }

    private protected override void UpdateVariable(Variable variable, DeviceBuffer gradient)
    {
        Variable m, v;
        if (Naming == KerasNaming.Keras2)
        {
            m = GetOrAddSlot(variable, "m");
            v = GetOrAddSlot(variable, "v");
        }
        else
        {
            var i = IndexOf(variable);
            m = _momentums[i];
            v = _velocities[i];
        }
        NnKernels.For(variable.Accelerator).AdamUpdate(checked((int)variable.ElementCount), variable.Buffer, m.Buffer, v.Buffer, gradient,
            _alpha, _beta1, _beta2, Epsilon);
        // Change tracking (Variable.ChangeTracking.cs): the kernel wrote the variable and both moments.
        variable.MarkModified();
        m.MarkModified();
        v.MarkModified();
    }

    private protected override IEnumerable<Variable> GetStateVariables(Variable variable)
    {
        if (Naming == KerasNaming.Keras2) return [GetOrAddSlot(variable, "m"), GetOrAddSlot(variable, "v")];
        var i = IndexOf(variable);
        return [_momentums[i], _velocities[i]];
    }
}

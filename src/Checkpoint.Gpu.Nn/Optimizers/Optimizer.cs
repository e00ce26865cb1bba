using CheckpointGpu.Devices;
using CheckpointGpu.Format;

namespace CheckpointGpu.Nn;

/// <summary>
/// Base of the Nn optimizers: the iteration counter, the learning-rate variable, per-variable state created lazily at
/// the first <see cref="ApplyGradients"/>, and the checkpoint layout of the chosen <see cref="KerasNaming"/>.
/// </summary>
/// <remarks>
/// <para><b>Keras 2 legacy <c>OptimizerV2</c></b> (tf-checkpoint-format.md §6.6): edges <c>iter</c> (int64 scalar,
/// <c>&lt;name&gt;/iter</c>) then the hyperparameter variables in sorted name order (float32 scalars, e.g.
/// <c>Adam/beta_1</c>), as <c>_create_hypers</c> does; per-variable state are <b>slot variables</b> saved under
/// <c>.OPTIMIZER_SLOT</c>. Slots are created at the first step that sees a variable. A restore that reaches a slot
/// before that parks its value in the optimizer, and the value becomes the slot's initial value when the slot is
/// created (§7.4). With <see cref="RestoreSlotsEagerly"/> the slot is created during the restore instead (Keras 2 eager
/// mode).</para>
/// <para><b>Keras 3</b>: no slots. Edges in order <c>_variables</c> (list: iteration, learning rate, then the state
/// variables interleaved per model variable), <c>_trainable_variables</c> (list of the model variables),
/// <c>_trainable_variables_indices</c> (empty dict), <c>_iterations</c>, <c>_learning_rate</c>, then the per-algorithm
/// lists (Adam <c>_momentums</c>, <c>_velocities</c>). State is created by <see cref="Build"/> (called by the first
/// step), named <c>&lt;name&gt;/&lt;variable path with '/'→'_'&gt;_&lt;kind&gt;</c>.</para>
/// <para>Hyperparameters stored as variables (learning rate; Keras 2 β1/β2/momentum) are read from the device at each
/// step, so restored values take effect, as in Keras. Host-side scalar arithmetic is float32.</para>
/// <para>Ownership: the optimizer owns the variables it creates and disposes them; the model variables it references
/// are not disposed. Thread-safety: not thread-safe; one training thread.</para>
/// </remarks>
public abstract class Optimizer : OptimizerBase
{
    private readonly List<Variable> _owned = [];
    private readonly Dictionary<string, Variable> _hypers = new(StringComparer.Ordinal);
    private readonly TrackableList<Variable>? _variables;
    private readonly TrackableList<Variable>? _trainableVariables;
    private readonly Dictionary<Variable, int> _variableIndex = new(ReferenceEqualityComparer.Instance);
    private IVariableWriteBarrier _writeBarrier = VariableWriteBarrier.None;
    private bool _disposed;

    /// <summary>Creates the counter and hyperparameter variables in the order TF tracks them.</summary>
    /// <param name="accelerator">Accelerator of the counter and hyperparameter variables (not disposed here).</param>
    /// <param name="name">Optimizer name, the prefix of its variables' names (Keras 2 <c>Adam</c>, Keras 3 <c>adam</c>).</param>
    /// <param name="naming">Checkpoint layout.</param>
    /// <param name="learningRate">Initial learning rate.</param>
    /// <param name="keras2Hypers">Keras 2 only: hyperparameter variables besides <c>learning_rate</c> (any order; tracked sorted).</param>
    private protected Optimizer(Accelerator accelerator, string name, KerasNaming naming, float learningRate,
        IReadOnlyList<(string Name, float Value)> keras2Hypers)
        : base(name)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        Accelerator = accelerator;
        Naming = naming;
        if (naming == KerasNaming.Keras2)
        {
            Iterations = Own(Variable.Create(this, "iter", accelerator, DType.Int64, TensorShape.Scalar, VariableInitializer.Zeros, $"{name}/iter"));
            var hypers = keras2Hypers.Append(("learning_rate", learningRate)).OrderBy(h => h.Item1, StringComparer.Ordinal);
            foreach (var (hyper, value) in hypers)
                _hypers[hyper] = Own(Variable.Create(this, hyper, accelerator, DType.Float, TensorShape.Scalar,
                    VariableInitializer.Constant(value), $"{name}/{hyper}"));
            LearningRate = _hypers["learning_rate"];
        }
        else
        {
            _variables = Track("_variables", new TrackableList<Variable>());
            _trainableVariables = Track("_trainable_variables", new TrackableList<Variable>());
            Track("_trainable_variables_indices", new TrackableDictionary());
            Iterations = Own(_variables.AddVariable(accelerator, DType.Int64, TensorShape.Scalar, VariableInitializer.Zeros, $"{name}/iteration"));
            Track("_iterations", Iterations);
            LearningRate = Own(_variables.AddVariable(accelerator, DType.Float, TensorShape.Scalar,
                VariableInitializer.Constant(learningRate), $"{name}/learning_rate"));
            Track("_learning_rate", LearningRate);
        }
    }

    /// <summary>Accelerator of the counter and hyperparameter variables.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>Checkpoint layout.</summary>
    public KerasNaming Naming { get; }

    /// <summary>Steps applied so far: int64 scalar (<c>iter</c> in Keras 2, <c>_iterations</c> in Keras 3).</summary>
    public Variable Iterations { get; }

    /// <summary>
    /// The training step: the number of updates applied so far, read from <see cref="Iterations"/> (an 8-byte copy from
    /// the device). Restored with the optimizer, so a resumed run continues counting where the checkpoint left off.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The optimizer was disposed.</exception>
    public long Step
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            Span<byte> bytes = stackalloc byte[sizeof(long)];
            Iterations.ReadBytes(bytes);
            return BitConverter.ToInt64(bytes);
        }
    }

    /// <summary>Learning rate: float32 scalar (<c>learning_rate</c> / <c>_learning_rate</c>); read at every step.</summary>
    public Variable LearningRate { get; }

    /// <summary>
    /// Keras 2 only: when true, a restore that reaches a variable's slot creates the slot at once from the checkpoint
    /// (Keras 2 eager behaviour); when false (default), the value waits in the optimizer until the first step creates
    /// the slot.
    /// </summary>
    public bool RestoreSlotsEagerly { get; init; }

    /// <summary>
    /// Awaited before each variable is mutated by <see cref="ApplyGradientsAsync"/> (see <see cref="IVariableWriteBarrier"/>);
    /// default <see cref="VariableWriteBarrier.None"/>.
    /// </summary>
    /// <exception cref="ArgumentNullException">Set to null.</exception>
    public IVariableWriteBarrier WriteBarrier
    {
        get => _writeBarrier;
        set => _writeBarrier = value ?? throw new ArgumentNullException(nameof(value));
    }

    /// <summary>Keras 3: true once <see cref="Build"/> created the state; Keras 2: true once any slot exists.</summary>
    public bool IsBuilt => Naming == KerasNaming.Keras3 ? _variableIndex.Count > 0 : SlotNames.Count > 0;

    /// <summary>Keras 3: the <c>_variables</c> list (iteration, learning rate, then state variables); Keras 2: empty.</summary>
    public IReadOnlyList<Variable> StateVariableList => (IReadOnlyList<Variable>?)_variables ?? [];

    /// <inheritdoc/>
    protected override bool CreateSlotsOnRestore => RestoreSlotsEagerly;

    /// <summary>Returns the Keras 2 hyperparameter variable <paramref name="hyperName"/> (e.g. <c>beta_1</c>).</summary>
    /// <param name="hyperName">Hyperparameter name.</param>
    /// <returns>The float32 scalar variable.</returns>
    /// <exception cref="KeyNotFoundException">No such hyperparameter variable (always for Keras 3).</exception>
    public Variable GetHyperVariable(string hyperName) =>
        _hypers.TryGetValue(hyperName, out var v) ? v : throw new KeyNotFoundException($"Optimizer '{Name}' has no hyperparameter variable '{hyperName}'.");

    /// <summary>
    /// Creates the per-variable state for <paramref name="variables"/> (Keras 2: missing slots; Keras 3: the whole
    /// state, once). Values parked by an earlier restore become the initial values.
    /// </summary>
    /// <param name="variables">The trainable float32 variables, in model order.</param>
    /// <exception cref="InvalidOperationException">Keras 3: already built for other variables.</exception>
    /// <exception cref="CheckpointMismatchException">A parked checkpoint value has another dtype or shape.</exception>
    public void Build(IReadOnlyList<Variable> variables)
    {
        ArgumentNullException.ThrowIfNull(variables);
        ObjectDisposedException.ThrowIf(_disposed, this);
        foreach (var v in variables)
            if (v.DType != DType.Float) throw new ArgumentException($"Variable '{v.Name}' is {DTypes.GetName(v.DType)}; the Nn optimizers update float32 variables.", nameof(variables));
        if (Naming == KerasNaming.Keras2)
        {
            CreateSlots(variables);
            return;
        }
        if (_variableIndex.Count > 0)
        {
            foreach (var v in variables)
                if (!_variableIndex.ContainsKey(v))
                    throw new InvalidOperationException($"Optimizer '{Name}' was built for other variables; '{v.Name}' is unknown (Keras 3 optimizers are built once).");
            return;
        }
        for (var i = 0; i < variables.Count; i++)
        {
            _variableIndex[variables[i]] = i;
            _trainableVariables!.Add(variables[i]);
        }
        BuildKeras3State(variables);
    }

    /// <summary>Applies one update to each variable, then increments <see cref="Iterations"/> (Keras <c>apply_gradients</c>).</summary>
    /// <param name="gradients">One gradient per variable (no duplicates); buffers on the variables' accelerators.</param>
    /// <exception cref="InvalidOperationException">A <see cref="WriteBarrier"/> other than <see cref="VariableWriteBarrier.None"/> is installed (use <see cref="ApplyGradientsAsync"/>).</exception>
    /// <exception cref="ArgumentException">A gradient is malformed or a variable appears twice.</exception>
    public void ApplyGradients(IReadOnlyList<Gradient> gradients)
    {
        ValidateGradients(gradients);
        if (!ReferenceEquals(_writeBarrier, VariableWriteBarrier.None))
            throw new InvalidOperationException("A write barrier is installed; call ApplyGradientsAsync, which awaits it.");
        var iterations = PrepareStep(gradients);
        foreach (var g in gradients) UpdateVariable(g.Variable, g.Value);
        WriteIterations(iterations + 1);
    }

    /// <summary>
    /// Like <see cref="ApplyGradients"/>, but awaits <see cref="WriteBarrier"/> for every variable before mutating it
    /// (the model variable and its state, then the iteration counter).
    /// </summary>
    /// <param name="gradients">One gradient per variable.</param>
    /// <param name="cancellationToken">Cancels between variables; variables already updated stay updated and the counter is not incremented.</param>
    /// <returns>A task completing when every update was enqueued.</returns>
    /// <exception cref="ArgumentException">A gradient is malformed or a variable appears twice.</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public async ValueTask ApplyGradientsAsync(IReadOnlyList<Gradient> gradients, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        ValidateGradients(gradients);
        var iterations = PrepareStep(gradients);
        foreach (var g in gradients)
        {
            foreach (var state in GetStateVariables(g.Variable))
                await _writeBarrier.WaitUntilStagedAsync(state, cancellationToken).ConfigureAwait(false);
            await _writeBarrier.WaitUntilStagedAsync(g.Variable, cancellationToken).ConfigureAwait(false);
            UpdateVariable(g.Variable, g.Value);
        }
        await _writeBarrier.WaitUntilStagedAsync(Iterations, cancellationToken).ConfigureAwait(false);
        WriteIterations(iterations + 1);
    }

    /// <summary>Keras 2: creates the missing slots of <paramref name="variables"/> (TF's <c>_create_slots</c>).</summary>
    /// <param name="variables">Model variables.</param>
    private protected abstract void CreateSlots(IReadOnlyList<Variable> variables);

    /// <summary>Keras 3: creates the state variables (via <see cref="AddKeras3StateVariable"/>) and tracks the per-algorithm lists.</summary>
    /// <param name="variables">Model variables.</param>
    private protected abstract void BuildKeras3State(IReadOnlyList<Variable> variables);

    /// <summary>Reads the step's scalars from the device (hyperparameters) given the iteration count before the step.</summary>
    /// <param name="iterations">Steps applied so far.</param>
    private protected abstract void PrepareScalars(long iterations);

    /// <summary>Enqueues the update of one variable.</summary>
    /// <param name="variable">Model variable.</param>
    /// <param name="gradient">Its gradient.</param>
    private protected abstract void UpdateVariable(Variable variable, Devices.DeviceBuffer gradient);

    /// <summary>The state variables (slots or moments) of <paramref name="variable"/>.</summary>
    /// <param name="variable">Model variable.</param>
    /// <returns>State variables.</returns>
    private protected abstract IEnumerable<Variable> GetStateVariables(Variable variable);

    /// <summary>Keras 3 position of <paramref name="variable"/> in <c>_trainable_variables</c>.</summary>
    private protected int IndexOf(Variable variable) =>
        _variableIndex.TryGetValue(variable, out var i) ? i : throw new InvalidOperationException($"Optimizer '{Name}' has no state for variable '{variable.Name}'.");

    /// <summary>Keras 2: the slot, created on first use (restored from a parked checkpoint value if any).</summary>
    private protected Variable GetOrAddSlot(Variable variable, string slotName) => AddSlot(variable, slotName);

    /// <summary>
    /// Keras 3 <c>add_variable_from_reference</c>: a zero variable shaped like <paramref name="reference"/>, appended to
    /// <c>_variables</c> (restored on creation from <c>_variables/&lt;n&gt;</c> when pending), named
    /// <c>&lt;name&gt;/&lt;path with '/'→'_'&gt;_&lt;kind&gt;</c>.
    /// </summary>
    private protected Variable AddKeras3StateVariable(Variable reference, string kind)
    {
        var fullName = $"{Name}/{Dense.PathOf(reference).Replace('/', '_')}_{kind}";
        return Own(_variables!.AddVariable(reference.Accelerator, reference.DType, reference.Shape, VariableInitializer.Zeros, fullName));
    }

    /// <summary>Keras 3: tracks a list attribute such as <c>_momentums</c>.</summary>
    private protected void TrackKeras3List(string edgeName, IEnumerable<Variable> items) => Track(edgeName, new TrackableList<Variable>(items));

    /// <summary>Reads a float32 scalar variable (one device-to-host copy).</summary>
    private protected static float ReadSingle(Variable scalar)
    {
        Span<byte> bytes = stackalloc byte[sizeof(float)];
        scalar.ReadBytes(bytes);
        return BitConverter.ToSingle(bytes);
    }

    private long PrepareStep(IReadOnlyList<Gradient> gradients)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        // Built lazily at the first step: Keras 2 slots, Keras 3 state (restore-on-create applies here).
        var variables = new Variable[gradients.Count];
        for (var i = 0; i < variables.Length; i++) variables[i] = gradients[i].Variable;
        Build(variables);
        Span<byte> bytes = stackalloc byte[sizeof(long)];
        Iterations.ReadBytes(bytes);
        var iterations = BitConverter.ToInt64(bytes);
        PrepareScalars(iterations);
        return iterations;
    }

    private void WriteIterations(long value)
    {
        Span<byte> bytes = stackalloc byte[sizeof(long)];
        BitConverter.TryWriteBytes(bytes, value);
        Iterations.AssignBytes(bytes);
    }

    private static void ValidateGradients(IReadOnlyList<Gradient> gradients)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        var seen = new HashSet<Variable>(ReferenceEqualityComparer.Instance);
        foreach (var g in gradients)
        {
            if (g.Variable is null || g.Value is null) throw new ArgumentException("A gradient has a null variable or buffer.", nameof(gradients));
            if (!seen.Add(g.Variable)) throw new ArgumentException($"Variable '{g.Variable.Name}' has two gradients.", nameof(gradients));
            if (g.Variable.DType != DType.Float) throw new ArgumentException($"Variable '{g.Variable.Name}' is not float32.", nameof(gradients));
            if (!ReferenceEquals(g.Value.Accelerator, g.Variable.Accelerator))
                throw new ArgumentException($"The gradient of '{g.Variable.Name}' is on another accelerator.", nameof(gradients));
            if (g.Value.LengthInBytes < g.Variable.LengthInBytes)
                throw new ArgumentException($"The gradient of '{g.Variable.Name}' has {g.Value.LengthInBytes} bytes; {g.Variable.LengthInBytes} needed.", nameof(gradients));
        }
    }

    private Variable Own(Variable v)
    {
        _owned.Add(v);
        return v;
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (_disposed) return;
        _disposed = true;
        if (disposing)
        {
            foreach (var v in _owned) v.Dispose();
            _owned.Clear();
        }
        base.Dispose(disposing);
    }
}

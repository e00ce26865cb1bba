using System.Runtime.CompilerServices;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;

namespace CheckpointGpu.Nn;

/// <summary>
/// Fully connected layer <c>y = activation(x · kernel + bias)</c> (Keras <c>Dense</c>): kernel float32 row-major
/// [input size, units], bias float32 [units]. Built lazily (<see cref="Build"/>, or by its container), so variables
/// created after a restore take their values from the checkpoint.
/// </summary>
/// <remarks>
/// <para><b>Naming</b> (tf-checkpoint-format.md §6.6). <see cref="KerasNaming.Keras2"/>: edges <c>kernel</c>, <c>bias</c>;
/// variable names (<c>full_name</c>) <c>&lt;layer&gt;/kernel</c>, <c>&lt;layer&gt;/bias</c> (e.g. <c>dense/kernel</c>).
/// <see cref="KerasNaming.Keras3"/>: edges <c>_kernel</c>, <c>bias</c>; variable name <c>&lt;scope&gt;/kernel</c> and
/// Keras path <c>&lt;scope&gt;/&lt;layer&gt;/kernel</c> where scope is the enclosing <see cref="Model"/>'s name
/// (observed: <c>compensator_network/kernel</c>, moments named after <c>compensator_network_dense_18_kernel</c>);
/// a Keras 3 layer built outside a model uses its own name for both (not observed in TF-written files).</para>
/// <para>Default initializers: Glorot-uniform kernel from <see cref="Seed"/> (deterministic, not TF's random stream)
/// and zero bias, as Keras.</para>
/// <para>Thread-safety: not thread-safe. Ownership: the layer owns its variables.</para>
/// </remarks>
public sealed class Dense : Module
{
    private static readonly ConditionalWeakTable<Variable, string> s_paths = [];
    private readonly VariableInitializer? _kernelInitializer;
    private readonly VariableInitializer? _biasInitializer;

    /// <summary>Creates an unbuilt layer.</summary>
    /// <param name="accelerator">Accelerator for the variables; not disposed by the layer.</param>
    /// <param name="units">Output size (at least 1).</param>
    /// <param name="activation">Activation.</param>
    /// <param name="naming">Keras generation whose names to reproduce.</param>
    /// <param name="name">Layer name; <see langword="null"/> lets the container pick Keras' default (<c>dense</c>, <c>dense_1</c>, …).</param>
    /// <param name="seed">Seed of the default Glorot-uniform kernel initializer.</param>
    /// <param name="kernelInitializer">Kernel initializer; <see langword="null"/> means Glorot uniform from <paramref name="seed"/>.</param>
    /// <param name="biasInitializer">Bias initializer; <see langword="null"/> means zeros.</param>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="units"/> is less than 1.</exception>
    public Dense(Accelerator accelerator, int units, Activation activation = Activation.Linear, KerasNaming naming = KerasNaming.Keras2,
        string? name = null, ulong seed = 0, VariableInitializer? kernelInitializer = null, VariableInitializer? biasInitializer = null)
        : base(name ?? "dense")
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        ArgumentOutOfRangeException.ThrowIfLessThan(units, 1);
        Accelerator = accelerator;
        Units = units;
        Activation = activation;
        Naming = naming;
        Seed = seed;
        HasDefaultName = name is null;
        _kernelInitializer = kernelInitializer;
        _biasInitializer = biasInitializer;
    }

    /// <summary>Accelerator holding the variables.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>Output size.</summary>
    public int Units { get; }

    /// <summary>Input size once built; 0 before.</summary>
    public int InputSize { get; private set; }

    /// <summary>The activation.</summary>
    public Activation Activation { get; }

    /// <summary>Naming scheme.</summary>
    public KerasNaming Naming { get; }

    /// <summary>Seed of the default kernel initializer.</summary>
    public ulong Seed { get; }

    /// <summary>True once <see cref="Kernel"/> and <see cref="Bias"/> exist.</summary>
    public bool IsBuilt => Kernel is not null;

    /// <summary>Kernel, float32 row-major [<see cref="InputSize"/>, <see cref="Units"/>]; null before <see cref="Build"/>.</summary>
    public Variable? Kernel { get; private set; }

    /// <summary>Bias, float32 [<see cref="Units"/>]; null before <see cref="Build"/>.</summary>
    public Variable? Bias { get; private set; }

    /// <summary>Edge name of the kernel: <c>kernel</c> (Keras 2) or <c>_kernel</c> (Keras 3).</summary>
    public string KernelEdgeName => Naming == KerasNaming.Keras3 ? "_kernel" : "kernel";

    internal bool HasDefaultName { get; private set; }

    internal void SetDefaultName(string name)
    {
        if (IsBuilt) throw new InvalidOperationException($"Layer '{Name}' is already built; it cannot be renamed.");
        Name = name;
        HasDefaultName = false;
    }

    /// <summary>
    /// Creates the kernel and bias (restored on creation when a checkpoint value is pending for their edges).
    /// </summary>
    /// <param name="inputSize">Input size (at least 1).</param>
    /// <param name="variableScope">Name of the enclosing model, if any (see remarks on the type).</param>
    /// <exception cref="InvalidOperationException">Already built with another input size.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="inputSize"/> is less than 1.</exception>
    /// <exception cref="CheckpointMismatchException">A pending checkpoint value has another shape or dtype.</exception>
    public void Build(int inputSize, string? variableScope = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(inputSize, 1);
        if (IsBuilt)
        {
            if (inputSize != InputSize)
                throw new InvalidOperationException($"Layer '{Name}' was built for input size {InputSize}, not {inputSize}.");
            return;
        }
        string kernelName, biasName, kernelPath, biasPath;
        if (Naming == KerasNaming.Keras3)
        {
            var scope = variableScope ?? Name;
            kernelName = scope + "/kernel";
            biasName = scope + "/bias";
            var path = variableScope is null ? Name : variableScope + "/" + Name;
            kernelPath = path + "/kernel";
            biasPath = path + "/bias";
        }
        else
        {
            // Keras 2 names variables by the enclosing name scopes: "dense/kernel", or "model/dense/kernel" inside a
            // subclassed model's call.
            var path = variableScope is null ? Name : variableScope + "/" + Name;
            kernelName = kernelPath = path + "/kernel";
            biasName = biasPath = path + "/bias";
        }
        InputSize = inputSize;
        var kernel = AddWeight(KernelEdgeName, Accelerator, DType.Float, new TensorShape(inputSize, Units),
            _kernelInitializer ?? NnInitializers.GlorotUniform(inputSize, Units, Seed), kernelName);
        var bias = AddWeight("bias", Accelerator, DType.Float, new TensorShape(Units), _biasInitializer, biasName);
        s_paths.AddOrUpdate(kernel, kernelPath);
        s_paths.AddOrUpdate(bias, biasPath);
        Kernel = kernel;
        Bias = bias;
    }

    /// <summary>The Keras variable path (Keras 3 <c>variable.path</c>) of a layer variable, else its name.</summary>
    internal static string PathOf(Variable variable) => s_paths.TryGetValue(variable, out var path) ? path : variable.Name;

    /// <summary>Forward pass: <c>output = activation(input · kernel + bias)</c>.</summary>
    /// <param name="batchSize">Rows.</param>
    /// <param name="input">float32 [batch, <see cref="InputSize"/>].</param>
    /// <param name="output">float32 [batch, <see cref="Units"/>], overwritten.</param>
    /// <exception cref="InvalidOperationException">The layer is not built.</exception>
    /// <exception cref="ArgumentException">A buffer is too small or on another accelerator.</exception>
    public void Forward(int batchSize, DeviceBuffer input, DeviceBuffer output)
    {
        var (kernel, bias) = RequireBuilt();
        var k = NnKernels.For(Accelerator);
        k.MatMul(false, false, batchSize, Units, InputSize, input, kernel.Buffer, output);
        k.BiasAdd(batchSize, Units, output, bias.Buffer);
        k.Activate(Activation, batchSize * Units, output);
    }

    /// <summary>
    /// Backward pass. <paramref name="outputGrad"/> (∂L/∂output) is turned in place into ∂L/∂pre-activation; then
    /// <c>kernelGrad = inputᵀ · that</c>, <c>biasGrad = column sums</c>, and, when requested,
    /// <c>inputGrad = that · kernelᵀ</c> (computed from the current kernel: call before updating it).
    /// </summary>
    /// <param name="batchSize">Rows.</param>
    /// <param name="input">float32 [batch, InputSize], the forward input.</param>
    /// <param name="output">float32 [batch, Units], the forward output.</param>
    /// <param name="outputGrad">float32 [batch, Units]; overwritten.</param>
    /// <param name="kernelGrad">float32 [InputSize, Units], overwritten.</param>
    /// <param name="biasGrad">float32 [Units], overwritten.</param>
    /// <param name="inputGrad">float32 [batch, InputSize], overwritten; <see langword="null"/> to skip (first layer).</param>
    /// <exception cref="InvalidOperationException">The layer is not built.</exception>
    /// <exception cref="ArgumentException">A buffer is too small or on another accelerator.</exception>
    public void Backward(int batchSize, DeviceBuffer input, DeviceBuffer output, DeviceBuffer outputGrad,
        DeviceBuffer kernelGrad, DeviceBuffer biasGrad, DeviceBuffer? inputGrad)
    {
        var (kernel, _) = RequireBuilt();
        var k = NnKernels.For(Accelerator);
        k.ActivationGrad(Activation, batchSize * Units, output, outputGrad);
        k.MatMul(true, false, InputSize, Units, batchSize, input, outputGrad, kernelGrad);
        k.BiasGrad(batchSize, Units, outputGrad, biasGrad);
        if (inputGrad is not null) k.MatMul(false, true, batchSize, InputSize, Units, outputGrad, kernel.Buffer, inputGrad);
    }

    private (Variable Kernel, Variable Bias) RequireBuilt()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (Kernel is null || Bias is null) throw new InvalidOperationException($"Layer '{Name}' is not built; call Build(inputSize) first.");
        return (Kernel, Bias);
    }
}

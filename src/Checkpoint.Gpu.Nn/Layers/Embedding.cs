using System.Runtime.InteropServices;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;

namespace CheckpointGpu.Nn;

/// <summary>
/// Embedding layer (Keras <c>Embedding</c>): a float32 table [<see cref="InputDimension"/>, <see cref="OutputDimension"/>]
/// whose row <c>id</c> is the vector of token <c>id</c>. Looking up a row-major int32 batch of contexts [batch, context]
/// yields the concatenated vectors [batch, context · OutputDimension], the input of a following <see cref="Dense"/> layer.
/// Built lazily (<see cref="Build"/>), so a table created after a restore takes its value from the checkpoint.
/// </summary>
/// <remarks>
/// <para><b>Naming</b> (as Keras): edge and attribute <c>embeddings</c>; variable name <c>&lt;layer&gt;/embeddings</c>
/// (e.g. <c>embedding/embeddings</c>), or <c>&lt;scope&gt;/&lt;layer&gt;/embeddings</c> inside a model's name scope.</para>
/// <para>Default initializer: uniform in [−0.05, 0.05) (Keras' <c>RandomUniform</c> default for <c>Embedding</c>) from a
/// SplitMix64 stream seeded with <see cref="Seed"/>: deterministic, not TF's random stream.</para>
/// <para>Thread-safety: not thread-safe. Ownership: the layer owns its table.</para>
/// </remarks>
public sealed class Embedding : Module
{
    private readonly VariableInitializer? _initializer;

    /// <summary>Creates an unbuilt layer.</summary>
    /// <param name="accelerator">Accelerator for the table; not disposed by the layer.</param>
    /// <param name="inputDimension">Vocabulary size: rows of the table (at least 1); ids must lie in [0, inputDimension).</param>
    /// <param name="outputDimension">Vector size: columns of the table (at least 1).</param>
    /// <param name="name">Layer name (Keras' default <c>embedding</c>).</param>
    /// <param name="seed">Seed of the default uniform initializer.</param>
    /// <param name="initializer">Table initializer; <see langword="null"/> means uniform in [−0.05, 0.05) from <paramref name="seed"/>.</param>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A dimension is less than 1.</exception>
    public Embedding(Accelerator accelerator, int inputDimension, int outputDimension, string name = "embedding", ulong seed = 0,
        VariableInitializer? initializer = null)
        : base(name)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        ArgumentOutOfRangeException.ThrowIfLessThan(inputDimension, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(outputDimension, 1);
        Accelerator = accelerator;
        InputDimension = inputDimension;
        OutputDimension = outputDimension;
        Seed = seed;
        _initializer = initializer;
    }

    /// <summary>Accelerator holding the table.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>Vocabulary size (table rows).</summary>
    public int InputDimension { get; }

    /// <summary>Vector size (table columns).</summary>
    public int OutputDimension { get; }

    /// <summary>Seed of the default initializer.</summary>
    public ulong Seed { get; }

    /// <summary>True once <see cref="Embeddings"/> exists.</summary>
    public bool IsBuilt => Embeddings is not null;

    /// <summary>The table, float32 row-major [<see cref="InputDimension"/>, <see cref="OutputDimension"/>]; null before <see cref="Build"/>.</summary>
    public Variable? Embeddings { get; private set; }

    /// <summary>Creates the table (restored on creation when a checkpoint value is pending for edge <c>embeddings</c>); idempotent.</summary>
    /// <param name="variableScope">Name of the enclosing model, if any (prefixes the variable name).</param>
    /// <exception cref="CheckpointMismatchException">A pending checkpoint value has another shape or dtype.</exception>
    /// <exception cref="ObjectDisposedException">The layer is disposed.</exception>
    public void Build(string? variableScope = null)
    {
        if (IsBuilt) return;
        var path = variableScope is null ? Name : variableScope + "/" + Name;
        Embeddings = AddWeight("embeddings", Accelerator, DType.Float, new TensorShape(InputDimension, OutputDimension),
            _initializer ?? Uniform(-0.05f, 0.05f, Seed), path + "/embeddings");
    }

    /// <summary>Forward pass: <c>output[i, d] = Embeddings[ids[i], d]</c> (<see cref="NnKernels.EmbeddingLookup"/>).</summary>
    /// <param name="count">Number of ids (batch × context).</param>
    /// <param name="ids">int32 [count], each in [0, <see cref="InputDimension"/>) (others give zero vectors).</param>
    /// <param name="output">float32 [count, <see cref="OutputDimension"/>], overwritten.</param>
    /// <exception cref="InvalidOperationException">The layer is not built.</exception>
    /// <exception cref="ArgumentException">A buffer is too small or on another accelerator.</exception>
    public void Forward(int count, DeviceBuffer ids, DeviceBuffer output) =>
        NnKernels.For(Accelerator).EmbeddingLookup(count, OutputDimension, InputDimension, ids, RequireBuilt().Buffer, output);

    /// <summary>Backward pass: <c>tableGrad</c> = the deterministic scatter-add of <paramref name="outputGrad"/>'s rows by id (<see cref="NnKernels.EmbeddingGrad"/>).</summary>
    /// <param name="count">Number of ids.</param>
    /// <param name="ids">int32 [count], the forward ids.</param>
    /// <param name="outputGrad">float32 [count, <see cref="OutputDimension"/>]: ∂L/∂output.</param>
    /// <param name="tableGrad">float32 [<see cref="InputDimension"/>, <see cref="OutputDimension"/>], overwritten with ∂L/∂Embeddings.</param>
    /// <exception cref="InvalidOperationException">The layer is not built.</exception>
    /// <exception cref="ArgumentException">A buffer is too small or on another accelerator.</exception>
    public void Backward(int count, DeviceBuffer ids, DeviceBuffer outputGrad, DeviceBuffer tableGrad)
    {
        RequireBuilt();
        NnKernels.For(Accelerator).EmbeddingGrad(count, OutputDimension, InputDimension, ids, outputGrad, tableGrad);
    }

    private Variable RequireBuilt()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        return Embeddings ?? throw new InvalidOperationException($"Layer '{Name}' is not built; call Build() first.");
    }

    private static VariableInitializer Uniform(float min, float max, ulong seed) => VariableInitializer.FromHost(bytes =>
    {
        var values = MemoryMarshal.Cast<byte, float>(bytes);
        var random = new SplitMix64(seed);
        for (var i = 0; i < values.Length; i++) values[i] = min + random.NextSingle() * (max - min);
    });
}

using System.Runtime.InteropServices;
using CheckpointGpu.Devices;

namespace CheckpointGpu.Nn;

/// <summary>
/// A training loop for a chain of <see cref="Dense"/> layers on a <see cref="RegressionTask"/> with mean squared error:
/// <see cref="TrainStep()"/> uploads the batch numbered by the optimizer's iteration count, runs forward, loss,
/// backward and the optimizer update on the layers' accelerator, and returns the loss. Reusable by tests and
/// <c>ckpt demo</c>.
/// </summary>
/// <remarks>
/// <para>Every kernel is deterministic (see <see cref="NnKernels"/>) and batches depend only on (seed, step), so
/// training N steps in one go or in two halves with a checkpoint in between gives bit-identical variables.</para>
/// <para>Scratch buffers (activations, deltas, gradients: about batch × Σ units + parameter count floats) are allocated
/// once on the accelerator and freed by <see cref="Dispose"/>; the layers and the optimizer are not disposed.
/// Thread-safety: not thread-safe.</para>
/// </remarks>
public sealed class MlpTrainer : IDisposable
{
    private readonly Dense[] _layers;
    private readonly DeviceBuffer _inputs;
    private readonly DeviceBuffer _targets;
    private readonly DeviceBuffer[] _activations;
    private readonly DeviceBuffer[] _deltas;
    private readonly DeviceBuffer[] _kernelGrads;
    private readonly DeviceBuffer[] _biasGrads;
    private readonly DeviceBuffer _loss;
    private readonly byte[] _hostInputs;   // float32 elements, kept as bytes for the copy API
    private readonly byte[] _hostTargets;
    private readonly byte[] _hostLoss = new byte[sizeof(float)];
    private readonly Gradient[] _gradients;
    private bool _disposed;

    /// <summary>Creates the trainer and its scratch buffers.</summary>
    /// <param name="layers">Built layers in execution order, all on one accelerator; the first takes <c>task.InputSize</c> inputs, the last produces <c>task.OutputSize</c> outputs.</param>
    /// <param name="optimizer">The optimizer.</param>
    /// <param name="task">The data.</param>
    /// <exception cref="ArgumentException">The layers are empty, unbuilt, on several accelerators, or their sizes do not chain.</exception>
    public MlpTrainer(IReadOnlyList<Dense> layers, Optimizer optimizer, RegressionTask task)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(optimizer);
        ArgumentNullException.ThrowIfNull(task);
        if (layers.Count == 0) throw new ArgumentException("At least one layer is needed.", nameof(layers));
        _layers = [.. layers];
        Accelerator = _layers[0].Accelerator;
        var size = task.InputSize;
        foreach (var layer in _layers)
        {
            if (!layer.IsBuilt) throw new ArgumentException($"Layer '{layer.Name}' is not built.", nameof(layers));
            if (!ReferenceEquals(layer.Accelerator, Accelerator)) throw new ArgumentException("All layers must be on one accelerator.", nameof(layers));
            if (layer.InputSize != size) throw new ArgumentException($"Layer '{layer.Name}' takes {layer.InputSize} inputs, {size} given.", nameof(layers));
            size = layer.Units;
        }
        if (size != task.OutputSize) throw new ArgumentException($"The last layer produces {size} outputs; the task has {task.OutputSize}.", nameof(layers));
        Optimizer = optimizer;
        Task = task;
        var batch = task.BatchSize;
        _hostInputs = new byte[batch * task.InputSize * sizeof(float)];
        _hostTargets = new byte[batch * task.OutputSize * sizeof(float)];
        var buffers = new List<DeviceBuffer>();
        try
        {
            DeviceBuffer Alloc(long floats)
            {
                var b = Accelerator.Allocate(floats * sizeof(float));
                buffers.Add(b);
                return b;
            }
            _inputs = Alloc(batch * task.InputSize);
            _targets = Alloc(batch * task.OutputSize);
            _loss = Alloc(1);
            _activations = _layers.Select(l => Alloc((long)batch * l.Units)).ToArray();
            _deltas = _layers.Select(l => Alloc((long)batch * l.Units)).ToArray();
            _kernelGrads = _layers.Select(l => Alloc((long)l.InputSize * l.Units)).ToArray();
            _biasGrads = _layers.Select(l => Alloc(l.Units)).ToArray();
        }
        catch
        {
            foreach (var b in buffers) b.Dispose();
            throw;
        }
        _gradients = new Gradient[_layers.Length * 2];
        for (var l = 0; l < _layers.Length; l++)
        {
            _gradients[2 * l] = new Gradient(_layers[l].Kernel!, _kernelGrads[l]);
            _gradients[2 * l + 1] = new Gradient(_layers[l].Bias!, _biasGrads[l]);
        }
    }

    /// <summary>The layers' accelerator.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>The optimizer.</summary>
    public Optimizer Optimizer { get; }

    /// <summary>The data.</summary>
    public RegressionTask Task { get; }

    /// <summary>
    /// The gradients of the last <see cref="ComputeGradients"/> (kernel then bias per layer, in layer order — Keras'
    /// <c>trainable_variables</c> order); buffers owned by the trainer.
    /// </summary>
    public IReadOnlyList<Gradient> Gradients => _gradients;

    /// <summary>Trains on the batch numbered by the optimizer's current iteration count; returns that batch's loss (before the update).</summary>
    /// <returns>Mean squared error.</returns>
    /// <exception cref="ObjectDisposedException">The trainer is disposed.</exception>
    public float TrainStep() => TrainStep(ReadIterations());

    /// <summary>Trains on batch <paramref name="batchIndex"/>; returns its loss before the update.</summary>
    /// <param name="batchIndex">Batch number.</param>
    /// <returns>Mean squared error.</returns>
    /// <exception cref="ObjectDisposedException">The trainer is disposed.</exception>
    public float TrainStep(long batchIndex)
    {
        var loss = ComputeGradients(batchIndex);
        Optimizer.ApplyGradients(_gradients);
        return loss;
    }

    /// <summary>
    /// Asynchronous <see cref="TrainStep()"/>: the optimizer awaits its <see cref="Optimizer.WriteBarrier"/> before each
    /// variable is mutated (device work itself stays on the accelerator stream).
    /// </summary>
    /// <param name="cancellationToken">Cancels before the update starts or between variables.</param>
    /// <returns>Mean squared error of the batch.</returns>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public async ValueTask<float> TrainStepAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var loss = ComputeGradients(ReadIterations());
        await Optimizer.ApplyGradientsAsync(_gradients, cancellationToken).ConfigureAwait(false);
        return loss;
    }

    /// <summary>Forward, loss and backward on batch <paramref name="batchIndex"/>, filling <see cref="Gradients"/>; no update.</summary>
    /// <param name="batchIndex">Batch number.</param>
    /// <returns>Mean squared error.</returns>
    /// <exception cref="ObjectDisposedException">The trainer is disposed.</exception>
    public float ComputeGradients(long batchIndex)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var batch = Task.BatchSize;
        Task.FillBatch(batchIndex, MemoryMarshal.Cast<byte, float>(_hostInputs.AsSpan()), MemoryMarshal.Cast<byte, float>(_hostTargets.AsSpan()));
        var stream = Accelerator.DefaultStream;
        // The host arrays stay untouched until the loss read below has synchronized the stream.
        stream.EnqueueCopyFromHost(_hostInputs.AsMemory(), _inputs.AsView());
        stream.EnqueueCopyFromHost(_hostTargets.AsMemory(), _targets.AsView());
        var kernels = NnKernels.For(Accelerator);
        var input = _inputs;
        for (var l = 0; l < _layers.Length; l++)
        {
            _layers[l].Forward(batch, input, _activations[l]);
            input = _activations[l];
        }
        var last = _layers.Length - 1;
        kernels.MeanSquaredError(batch * Task.OutputSize, _activations[last], _targets, _deltas[last], _loss);
        for (var l = last; l >= 0; l--)
        {
            _layers[l].Backward(batch, l == 0 ? _inputs : _activations[l - 1], _activations[l], _deltas[l],
                _kernelGrads[l], _biasGrads[l], l == 0 ? null : _deltas[l - 1]);
        }
        stream.EnqueueCopyToHost(_loss.View(0, sizeof(float)), _hostLoss.AsMemory());
        stream.Synchronize();
        return BitConverter.ToSingle(_hostLoss);
    }

    /// <summary>Loss of batch <paramref name="batchIndex"/> under the current variables (forward only, gradients overwritten).</summary>
    /// <param name="batchIndex">Batch number.</param>
    /// <returns>Mean squared error.</returns>
    public float Evaluate(long batchIndex) => ComputeGradients(batchIndex);

    private long ReadIterations()
    {
        Span<byte> bytes = stackalloc byte[sizeof(long)];
        Optimizer.Iterations.ReadBytes(bytes);
        return BitConverter.ToInt64(bytes);
    }

    /// <summary>Frees the scratch buffers (after queued work on them completes).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _inputs.Dispose();
        _targets.Dispose();
        _loss.Dispose();
        foreach (var b in _activations.Concat(_deltas).Concat(_kernelGrads).Concat(_biasGrads)) b.Dispose();
    }
}

using System.Runtime.InteropServices;
using CheckpointGpu.Devices;

namespace CheckpointGpu.Nn;

/// <summary>
/// A training loop for a byte-level language model: an <see cref="Embedding"/> of a context window of
/// <see cref="ContextLength"/> bytes, concatenated, then a chain of <see cref="Dense"/> layers whose last one produces one
/// logit per byte value, trained with softmax cross-entropy to predict the byte that follows the window. Each step takes
/// a batch of sequences of <c>ContextLength + 1</c> bytes (row-major [batch, ContextLength + 1], as a
/// <c>CheckpointGpu.Data</c> iterator yields them): the first <c>ContextLength</c> bytes are the context, the last one the target.
/// </summary>
/// <remarks>
/// <para>Every kernel is deterministic (see <see cref="NnKernels"/>), so the same batches in the same order give
/// bit-identical variables, however the run is split by checkpoints and processes.</para>
/// <para>Scratch buffers (ids, activations, deltas, gradients: about batch × (context × dimension + Σ units) floats plus
/// the parameter count) are allocated once on the accelerator and freed by <see cref="Dispose"/>; the layers and the
/// optimizer are not disposed. Thread-safety: not thread-safe.</para>
/// </remarks>
public sealed class ByteLanguageModelTrainer : IDisposable
{
    private readonly Embedding _embedding;
    private readonly Dense[] _layers;
    private readonly DeviceBuffer _ids;
    private readonly DeviceBuffer _labels;
    private readonly DeviceBuffer _embedded;
    private readonly DeviceBuffer _embeddedGrad;
    private readonly DeviceBuffer _tableGrad;
    private readonly DeviceBuffer[] _activations;
    private readonly DeviceBuffer[] _deltas;
    private readonly DeviceBuffer[] _kernelGrads;
    private readonly DeviceBuffer[] _biasGrads;
    private readonly DeviceBuffer _loss;
    private readonly byte[] _hostIds;      // int32 elements, kept as bytes for the copy API
    private readonly byte[] _hostLabels;
    private readonly byte[] _hostLoss = new byte[sizeof(float)];
    private readonly Gradient[] _gradients;
    private bool _disposed;

    /// <summary>Creates the trainer and its scratch buffers.</summary>
    /// <param name="embedding">Built embedding of the bytes (at least 256 rows).</param>
    /// <param name="layers">Built layers in execution order, on the embedding's accelerator; the first takes
    /// <c>contextLength × embedding.OutputDimension</c> inputs, the last produces <c>embedding.InputDimension</c> logits.</param>
    /// <param name="optimizer">The optimizer.</param>
    /// <param name="batchSize">Sequences per step (at least 1).</param>
    /// <param name="contextLength">Context bytes per sequence (at least 1).</param>
    /// <exception cref="ArgumentException">The layers are empty, unbuilt, on another accelerator, or their sizes do not chain.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A size is less than 1, or the embedding has fewer than 256 rows.</exception>
    public ByteLanguageModelTrainer(Embedding embedding, IReadOnlyList<Dense> layers, Optimizer optimizer, int batchSize, int contextLength)
    {
        ArgumentNullException.ThrowIfNull(embedding);
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(optimizer);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(contextLength, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(embedding.InputDimension, 256, nameof(embedding));
        if (!embedding.IsBuilt) throw new ArgumentException($"Layer '{embedding.Name}' is not built.", nameof(embedding));
        if (layers.Count == 0) throw new ArgumentException("At least one dense layer is needed.", nameof(layers));
        _embedding = embedding;
        _layers = [.. layers];
        Accelerator = embedding.Accelerator;
        var size = checked(contextLength * embedding.OutputDimension);
        foreach (var layer in _layers)
        {
            if (!layer.IsBuilt) throw new ArgumentException($"Layer '{layer.Name}' is not built.", nameof(layers));
            if (!ReferenceEquals(layer.Accelerator, Accelerator)) throw new ArgumentException("All layers must be on the embedding's accelerator.", nameof(layers));
            if (layer.InputSize != size) throw new ArgumentException($"Layer '{layer.Name}' takes {layer.InputSize} inputs, {size} given.", nameof(layers));
            size = layer.Units;
        }
        if (size != embedding.InputDimension)
            throw new ArgumentException($"The last layer produces {size} logits; the vocabulary has {embedding.InputDimension}.", nameof(layers));
        Optimizer = optimizer;
        BatchSize = batchSize;
        ContextLength = contextLength;
        var idCount = checked(batchSize * contextLength);
        _hostIds = new byte[idCount * sizeof(int)];
        _hostLabels = new byte[batchSize * sizeof(int)];
        var buffers = new List<DeviceBuffer>();
        try
        {
            DeviceBuffer Alloc(long elements)
            {
                var b = Accelerator.Allocate(elements * sizeof(float));
                buffers.Add(b);
                return b;
            }
            _ids = Alloc(idCount);
            _labels = Alloc(batchSize);
            _embedded = Alloc((long)idCount * embedding.OutputDimension);
            _embeddedGrad = Alloc((long)idCount * embedding.OutputDimension);
            _tableGrad = Alloc((long)embedding.InputDimension * embedding.OutputDimension);
            _loss = Alloc(1);
            _activations = _layers.Select(l => Alloc((long)batchSize * l.Units)).ToArray();
            _deltas = _layers.Select(l => Alloc((long)batchSize * l.Units)).ToArray();
            _kernelGrads = _layers.Select(l => Alloc((long)l.InputSize * l.Units)).ToArray();
            _biasGrads = _layers.Select(l => Alloc(l.Units)).ToArray();
        }
        catch
        {
            foreach (var b in buffers) b.Dispose();
            throw;
        }
        _gradients = new Gradient[1 + _layers.Length * 2];
        _gradients[0] = new Gradient(embedding.Embeddings!, _tableGrad);
        for (var l = 0; l < _layers.Length; l++)
        {
            _gradients[1 + 2 * l] = new Gradient(_layers[l].Kernel!, _kernelGrads[l]);
            _gradients[2 + 2 * l] = new Gradient(_layers[l].Bias!, _biasGrads[l]);
        }
    }

    /// <summary>The layers' accelerator.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>The optimizer.</summary>
    public Optimizer Optimizer { get; }

    /// <summary>Sequences per step.</summary>
    public int BatchSize { get; }

    /// <summary>Context bytes per sequence; sequences are one byte longer (the target).</summary>
    public int ContextLength { get; }

    /// <summary>Bytes per sequence: <see cref="ContextLength"/> + 1.</summary>
    public int SequenceLength => ContextLength + 1;

    /// <summary>
    /// The gradients of the last <see cref="ComputeGradients"/>: the embedding table, then kernel and bias per dense
    /// layer in order (Keras' <c>trainable_variables</c> order of a Sequential); buffers owned by the trainer.
    /// </summary>
    public IReadOnlyList<Gradient> Gradients => _gradients;

    /// <summary>
    /// Trains on one batch: forward, loss, backward and the optimizer update (which awaits the optimizer's
    /// <see cref="Optimizer.WriteBarrier"/> before each variable is mutated).
    /// </summary>
    /// <param name="sequences">[<see cref="BatchSize"/>, <see cref="SequenceLength"/>] bytes, row-major.</param>
    /// <param name="cancellationToken">Cancels before the update starts or between variables.</param>
    /// <returns>The batch's mean cross-entropy in nats, before the update.</returns>
    /// <exception cref="ArgumentException"><paramref name="sequences"/> has another length.</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    /// <exception cref="ObjectDisposedException">The trainer is disposed.</exception>
    public async ValueTask<float> TrainStepAsync(ReadOnlyMemory<byte> sequences, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var loss = ComputeGradients(sequences.Span);
        await Optimizer.ApplyGradientsAsync(_gradients, cancellationToken).ConfigureAwait(false);
        return loss;
    }

    /// <summary>Forward, loss and backward on one batch, filling <see cref="Gradients"/>; no update.</summary>
    /// <param name="sequences">[<see cref="BatchSize"/>, <see cref="SequenceLength"/>] bytes, row-major.</param>
    /// <returns>The batch's mean cross-entropy in nats.</returns>
    /// <exception cref="ArgumentException"><paramref name="sequences"/> has another length.</exception>
    /// <exception cref="ObjectDisposedException">The trainer is disposed.</exception>
    public float ComputeGradients(ReadOnlySpan<byte> sequences)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (sequences.Length != BatchSize * SequenceLength)
            throw new ArgumentException($"Expected {BatchSize} sequences of {SequenceLength} bytes ({BatchSize * SequenceLength} bytes), got {sequences.Length}.", nameof(sequences));
        var ids = MemoryMarshal.Cast<byte, int>(_hostIds.AsSpan());
        var labels = MemoryMarshal.Cast<byte, int>(_hostLabels.AsSpan());
        for (var b = 0; b < BatchSize; b++)
        {
            var sequence = sequences.Slice(b * SequenceLength, SequenceLength);
            for (var c = 0; c < ContextLength; c++) ids[b * ContextLength + c] = sequence[c];
            labels[b] = sequence[ContextLength];
        }
        var stream = Accelerator.DefaultStream;
        // The host arrays stay untouched until the loss read below has synchronized the stream.
        stream.EnqueueCopyFromHost(_hostIds.AsMemory(), _ids.View(0, _hostIds.Length));
        stream.EnqueueCopyFromHost(_hostLabels.AsMemory(), _labels.View(0, _hostLabels.Length));
        var idCount = BatchSize * ContextLength;
        _embedding.Forward(idCount, _ids, _embedded);
        var input = _embedded;
        for (var l = 0; l < _layers.Length; l++)
        {
            _layers[l].Forward(BatchSize, input, _activations[l]);
            input = _activations[l];
        }
        var last = _layers.Length - 1;
        NnKernels.For(Accelerator).SoftmaxCrossEntropy(BatchSize, _embedding.InputDimension, _activations[last], _labels, _deltas[last], _loss);
        for (var l = last; l >= 0; l--)
        {
            _layers[l].Backward(BatchSize, l == 0 ? _embedded : _activations[l - 1], _activations[l], _deltas[l],
                _kernelGrads[l], _biasGrads[l], l == 0 ? _embeddedGrad : _deltas[l - 1]);
        }
        _embedding.Backward(idCount, _ids, _embeddedGrad, _tableGrad);
        stream.EnqueueCopyToHost(_loss.View(0, sizeof(float)), _hostLoss.AsMemory());
        stream.Synchronize();
        return BitConverter.ToSingle(_hostLoss);
    }

    /// <summary>Frees the scratch buffers (after queued work on them completes).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var b in new[] { _ids, _labels, _embedded, _embeddedGrad, _tableGrad, _loss }
            .Concat(_activations).Concat(_deltas).Concat(_kernelGrads).Concat(_biasGrads)) b.Dispose();
    }
}

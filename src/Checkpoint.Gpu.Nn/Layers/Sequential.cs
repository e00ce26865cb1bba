using System.Globalization;

namespace CheckpointGpu.Nn;

/// <summary>
/// Keras 2 <c>Sequential</c> container: layers run in order and are exposed to checkpoints under TF's edge names —
/// for each layer <c>i</c> in order, first <c>layer_with_weights-&lt;j&gt;</c> (only when the layer has weights; <c>j</c>
/// counts weighted layers) and then <c>layer-&lt;i&gt;</c> — followed by any other tracked dependency, such as the
/// <see cref="Optimizer"/> of a compiled model (edge <c>optimizer</c>).
/// </summary>
/// <remarks>
/// <para>Order as observed in <c>sm-keras-tf23-adam-metrics</c>: <c>layer_with_weights-0</c>, <c>layer-0</c>,
/// <c>layer_with_weights-1</c>, <c>layer-1</c>, …, <c>optimizer</c>. Keys use the first path found breadth-first, so
/// variables are stored under <c>layer_with_weights-&lt;j&gt;/kernel/…</c>. The edges are computed from the current
/// layers (Keras' <c>_layer_checkpoint_dependencies</c>): an unbuilt layer has no weights and only its
/// <c>layer-&lt;i&gt;</c> edge, through which a restore still reaches it and defers its variables until it is built.</para>
/// <para>Layers with a default name get Keras' names in order: <c>dense</c>, <c>dense_1</c>, … (Keras numbers them
/// per Python session; these match a fresh session). Thread-safety: not thread-safe.</para>
/// </remarks>
public sealed class Sequential : Module
{
    private readonly List<Module> _layers = [];
    private Optimizer? _optimizer;

    /// <summary>Creates an empty model.</summary>
    /// <param name="name">Model name.</param>
    public Sequential(string name = "sequential") : base(name) { }

    /// <summary>Layers in execution order.</summary>
    public IReadOnlyList<Module> Layers => _layers;

    /// <summary>The <see cref="Dense"/> layers in execution order.</summary>
    public IReadOnlyList<Dense> DenseLayers => _layers.OfType<Dense>().ToArray();

    /// <summary>
    /// The optimizer of a compiled model, tracked as edge <c>optimizer</c> (not disposed by the model);
    /// <see langword="null"/> removes the edge.
    /// </summary>
    public Optimizer? Optimizer
    {
        get => _optimizer;
        set
        {
            Track<Trackable?>("optimizer", value);
            _optimizer = value;
        }
    }

    /// <summary>Appends a layer (Keras <c>model.add</c>).</summary>
    /// <param name="layer">The layer; owned (disposed) by this model from now on.</param>
    /// <exception cref="ArgumentNullException"><paramref name="layer"/> is null.</exception>
    /// <exception cref="ArgumentException">The layer is already in the model, or another layer has the same name.</exception>
    public void Add(Module layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (_layers.Contains(layer)) throw new ArgumentException($"Layer '{layer.Name}' is already in the model.", nameof(layer));
        if (layer is Dense { HasDefaultName: true } dense)
        {
            var index = _layers.OfType<Dense>().Count();
            dense.SetDefaultName(index == 0 ? "dense" : "dense_" + index.ToString(CultureInfo.InvariantCulture));
        }
        if (_layers.Any(l => l.Name == layer.Name))
            throw new ArgumentException($"All layers added to a Sequential model should have unique names; '{layer.Name}' is already used.", nameof(layer));
        _layers.Add(layer);
    }

    /// <summary>Builds every <see cref="Dense"/> layer in order, chaining sizes from <paramref name="inputSize"/>.</summary>
    /// <param name="inputSize">Input size of the first layer.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="inputSize"/> is less than 1.</exception>
    /// <exception cref="CheckpointMismatchException">A pending checkpoint value has another shape or dtype.</exception>
    public void Build(int inputSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(inputSize, 1);
        var size = inputSize;
        foreach (var dense in DenseLayers)
        {
            dense.Build(size);
            size = dense.Units;
        }
    }

    /// <inheritdoc/>
    public override IReadOnlyList<TrackableReference> GetChildren()
    {
        var edges = new List<TrackableReference>(_layers.Count * 2 + TrackedDependencies.Count);
        var weighted = 0;
        for (var i = 0; i < _layers.Count; i++)
        {
            var layer = _layers[i];
            if (layer.Variables.Count > 0)
                edges.Add(new TrackableReference("layer_with_weights-" + (weighted++).ToString(CultureInfo.InvariantCulture), layer));
            edges.Add(new TrackableReference("layer-" + i.ToString(CultureInfo.InvariantCulture), layer));
        }
        edges.AddRange(TrackedDependencies);
        return edges;
    }
}

using CheckpointGpu.Distributed.Variables;
using System.Runtime.InteropServices;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;

namespace CheckpointGpu.Distributed.Worker;

/// <summary>
/// The model every worker (and the single-process reference) builds: replicated dense variables, host state, and a
/// partitioned embedding whose row slices are spread over the workers. Values are a pure function of (name, index).
/// </summary>
public sealed class WorkerModel : IDisposable
{
    public static readonly TensorShape EmbShape = new(11, 6);
    public static readonly (string Edge, DType DType, TensorShape Shape)[] Variables =
    [
        ("kernel", DType.Float, new TensorShape(37, 19)),
        ("bias", DType.Float, new TensorShape(19)),
        ("big", DType.Float, new TensorShape(257, 1024)),
        ("steps", DType.Int64, new TensorShape(5, 3)),
        ("scale", DType.Double, TensorShape.Scalar),
        ("table", DType.Int32, new TensorShape(1025)),
    ];

    private readonly List<IDisposable> _owned = [];

    public Checkpoint Checkpoint { get; }
    public AutoTrackable Model { get; }
    public PartitionedVariable Embedding { get; }
    public Dictionary<string, Variable> ByEdge { get; } = new(StringComparer.Ordinal);
    public BalancedOwnership Ownership { get; } = new();
    public long[] Counter { get; } = [0];

    /// <param name="accelerator">Where variables live.</param>
    /// <param name="embParts">Which parts of the embedding this process holds (indices into a split in <paramref name="embPartCount"/>).</param>
    /// <param name="embPartCount">How many row slices the embedding is split into.</param>
    /// <param name="fill">Initialize with the reference values (else zeros).</param>
    /// <param name="onSaveHostState">Called when the host state attribute is saved (fault injection).</param>
    public WorkerModel(Accelerator accelerator, IReadOnlyList<int> embParts, int embPartCount, bool fill, Action? onSaveHostState = null)
    {
        Model = new AutoTrackable();
        var dense = Model.Track("dense", new AutoTrackable());
        foreach (var (edge, dtype, shape) in Variables)
        {
            var parent = edge is "kernel" or "bias" ? dense : Model;
            var v = Variable.Create(parent, edge, accelerator, dtype, shape, fill ? Initializer(edge, dtype, shape.ElementCount) : null, fullName: edge);
            _owned.Add(v);
            ByEdge[edge] = v;
        }
        Embedding = new PartitionedVariable("emb", DType.Float, EmbShape);
        var slices = PartitionedVariable.SplitAlongAxis(EmbShape, 0, embPartCount);
        foreach (var p in embParts)
        {
            var slice = slices[p];
            Embedding.AddPart(accelerator, slice, fill ? SliceInitializer(slice) : null, p);
        }
        _owned.Add(Embedding);
        Model.Track("emb", Embedding);
        // Host state: a step counter held in host memory, saved by one worker.
        Model.Track("state", new HostState(this, onSaveHostState));
        Checkpoint = new Checkpoint(("model", Model)) { Log = null };
    }

    public static float EmbValue(long fullIndex) => Value("emb", fullIndex);

    public static float Value(string name, long i)
    {
        var h = 17u;
        foreach (var c in name) h = h * 31 + c;
        return (float)(((h + (ulong)i * 2654435761UL) % 200003UL) / 1024.0) - 97.5f;
    }

    public static byte[] ExpectedBytes(string edge, DType dtype, long count)
    {
        return dtype switch
        {
            DType.Float => MemoryMarshal.AsBytes(Enumerable.Range(0, (int)count).Select(i => Value(edge, i)).ToArray().AsSpan()).ToArray(),
            DType.Double => MemoryMarshal.AsBytes(Enumerable.Range(0, (int)count).Select(i => (double)Value(edge, i) * 3.25).ToArray().AsSpan()).ToArray(),
            DType.Int64 => MemoryMarshal.AsBytes(Enumerable.Range(0, (int)count).Select(i => (long)(Value(edge, i) * 1e6)).ToArray().AsSpan()).ToArray(),
            DType.Int32 => MemoryMarshal.AsBytes(Enumerable.Range(0, (int)count).Select(i => (int)(Value(edge, i) * 1000)).ToArray().AsSpan()).ToArray(),
            _ => throw new NotSupportedException(),
        };
    }

    public static byte[] ExpectedSliceBytes(TensorSlice slice)
    {
        var rows = slice.Extents[0];
        var cols = EmbShape[1];
        var values = new float[rows.Length * cols];
        for (long r = 0; r < rows.Length; r++)
            for (long c = 0; c < cols; c++) values[r * cols + c] = EmbValue((rows.Start + r) * cols + c);
        return MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
    }

    private static VariableInitializer Initializer(string edge, DType dtype, long count)
    {
        var bytes = ExpectedBytes(edge, dtype, count);
        return VariableInitializer.FromHost(span => bytes.CopyTo(span));
    }

    private static VariableInitializer SliceInitializer(TensorSlice slice)
    {
        var bytes = ExpectedSliceBytes(slice);
        return VariableInitializer.FromHost(span => bytes.CopyTo(span));
    }

    public void Dispose()
    {
        Checkpoint.Dispose();
        foreach (var d in _owned) d.Dispose();
    }

    public Trackable StateObject => Model.GetChildren().First(c => c.Name == "state").Target;

    private sealed class HostState(WorkerModel model, Action? onSave) : TrackableState
    {
        protected override DType? ExpectedDType => DType.Int64;

        public override HostTensor Serialize()
        {
            onSave?.Invoke();
            return HostTensor.FromValues<long>([42, 7]);
        }

        public override void Deserialize(HostTensor tensor) => model.Counter[0] = MemoryMarshal.Read<long>(tensor.Bytes.Span);
    }
}

using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.IO;

namespace CheckpointGpu.Distributed.Variables;

/// <summary>
/// A logical tensor split into rectangular slices spread over workers (TF1's <c>PartitionedVariable</c> /
/// variables with <c>SaveSliceInfo</c>); this process holds only its own <see cref="Parts"/>. Saved in TF's
/// partitioned form (<c>tensor_bundle.cc</c> <c>AddSlice</c>, spec §3.4): a full-tensor entry under the attribute key
/// listing every stored slice, plus one slice entry per part under the encoded slice key — so TensorFlow reads the
/// result too, and a checkpoint written with one partitioning restores into any other (each part reads its region
/// from the intersecting stored slices, TF's <c>LookupSlice</c>).
/// </summary>
/// <remarks>
/// <para>In the object graph it is one node with one <c>VARIABLE_VALUE</c> attribute and no children, whatever parts
/// are local, so every worker builds the same graph. Add the local parts before the object is tracked (or restored):
/// parts added later are not restored.</para>
/// <para>Ownership: the parts' variables are owned (disposed) by this object. Thread-safety: not thread-safe.</para>
/// </remarks>
public sealed class PartitionedVariable : Trackable, IDisposable
{
    private readonly List<VariablePart> _parts = [];
    private IReadOnlyList<SaveableValue>? _attributes;

    /// <summary>Creates a partitioned variable with no local parts.</summary>
    /// <param name="name">TF name of the full variable (<c>full_name</c>, e.g. <c>emb</c>).</param>
    /// <param name="dtype">Fixed-size element type.</param>
    /// <param name="fullShape">Shape of the whole logical tensor, outermost first.</param>
    /// <exception cref="ArgumentException">Empty name or a dtype that is not fixed-size.</exception>
    public PartitionedVariable(string name, DType dtype, TensorShape fullShape)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (!DTypes.IsFixedSize(dtype)) throw new ArgumentException($"Partitioned variable '{name}': dtype {DTypes.GetName(dtype)} is not fixed-size.", nameof(dtype));
        Name = name;
        DType = dtype;
        FullShape = fullShape;
    }

    /// <summary>TF name of the full variable.</summary>
    public string Name { get; }

    /// <summary>Element type.</summary>
    public DType DType { get; }

    /// <summary>Shape of the whole logical tensor.</summary>
    public TensorShape FullShape { get; }

    /// <summary>The slices held in this process, in the order they were added (their data order).</summary>
    public IReadOnlyList<VariablePart> Parts => _parts;

    /// <summary>
    /// Allocates a local part holding <paramref name="slice"/> on <paramref name="accelerator"/>, named
    /// <c>&lt;name&gt;/part_&lt;k&gt;</c> like TF1's partitions.
    /// </summary>
    /// <param name="accelerator">Where the part lives; not disposed here.</param>
    /// <param name="slice">Region of the full tensor (same rank; must not overlap an existing local part).</param>
    /// <param name="initializer">Initial value of the part; zeros when null.</param>
    /// <param name="partIndex">Number in the part's name; defaults to the number of local parts.</param>
    /// <returns>The part's variable (owned by this object).</returns>
    /// <exception cref="ArgumentException">The slice does not fit the full shape or overlaps a local part.</exception>
    public Variable AddPart(Accelerator accelerator, TensorSlice slice, VariableInitializer? initializer = null, int? partIndex = null)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        ArgumentNullException.ThrowIfNull(slice);
        var shape = slice.GetSliceShape(FullShape);
        foreach (var p in _parts)
            if (Overlaps(p.Slice, slice)) throw new ArgumentException($"Slice {slice} overlaps local part {p.Slice} of '{Name}'.", nameof(slice));
        var variable = Variable.Create(accelerator, $"{Name}/part_{partIndex ?? _parts.Count}", DType, shape, initializer);
        _parts.Add(new VariablePart(variable, slice));
        return variable;
    }

    /// <summary>
    /// Splits <paramref name="fullShape"/> into <paramref name="count"/> slices along <paramref name="axis"/>, the
    /// first <c>dim % count</c> one row larger (TF's <c>fixed_size_partitioner</c> layout).
    /// </summary>
    /// <param name="fullShape">The full shape.</param>
    /// <param name="axis">Dimension to split.</param>
    /// <param name="count">Number of slices, 1 ≤ count ≤ the dimension's size.</param>
    /// <returns>The slices, in order along the axis.</returns>
    /// <exception cref="ArgumentOutOfRangeException">Axis or count out of range.</exception>
    public static IReadOnlyList<TensorSlice> SplitAlongAxis(TensorShape fullShape, int axis, int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(axis);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(axis, fullShape.Rank);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, fullShape[axis]);
        var dim = fullShape[axis];
        var slices = new TensorSlice[count];
        long start = 0;
        for (var i = 0; i < count; i++)
        {
            var length = dim / count + (i < dim % count ? 1 : 0);
            var extents = new TensorSliceExtent[fullShape.Rank];
            for (var d = 0; d < extents.Length; d++) extents[d] = d == axis ? new TensorSliceExtent(start, length) : TensorSliceExtent.Full;
            slices[i] = new TensorSlice(extents);
            start += length;
        }
        return slices;
    }

    /// <inheritdoc/>
    protected internal override IReadOnlyList<SaveableValue> GetSaveableValues() => _attributes ??= [new PartitionedSaveable(this)];

    /// <summary>Frees every local part.</summary>
    public void Dispose()
    {
        foreach (var p in _parts) p.Variable.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => $"PartitionedVariable '{Name}' {DTypes.GetName(DType)} {FullShape}, {_parts.Count} local part(s)";

    private bool Overlaps(TensorSlice a, TensorSlice b)
    {
        for (var d = 0; d < FullShape.Rank; d++)
        {
            var (s1, e1) = a.Extents[d].IsFull ? (0, FullShape[d]) : (a.Extents[d].Start, a.Extents[d].Start + a.Extents[d].Length);
            var (s2, e2) = b.Extents[d].IsFull ? (0, FullShape[d]) : (b.Extents[d].Start, b.Extents[d].Start + b.Extents[d].Length);
            if (Math.Min(e1, e2) <= Math.Max(s1, s2)) return false;
        }
        return true;
    }
}

/// <summary>The <c>VARIABLE_VALUE</c> attribute of a <see cref="PartitionedVariable"/>: one slice per local part.</summary>
internal sealed class PartitionedSaveable(PartitionedVariable owner) : SaveableValue(CheckpointKeys.VariableValue, owner.Name)
{
    public PartitionedVariable Owner { get; } = owner;

    internal override long EstimatedSizeInBytes => Owner.Parts.Sum(p => p.Variable.LengthInBytes);

    internal override void Save(ITensorWriter writer, string key, int shardId)
    {
        for (var i = 0; i < Owner.Parts.Count; i++) SavePart(writer, key, i, shardId);
    }

    internal void SavePart(ITensorWriter writer, string key, int index, int shardId)
    {
        var part = Owner.Parts[index];
        writer.AddVariableSlice(key, Owner.FullShape, part.Slice, part.Variable, shardId);
    }

    internal override void Restore(ITensorReader reader, string key, StoredTensorInfo info, string objectPath)
    {
        if (info.DType != Owner.DType || info.Shape != Owner.FullShape)
            throw new CheckpointMismatchException(
                info.DType != Owner.DType ? $"Dtype mismatch restoring partitioned variable '{Owner.Name}'." : $"Shape mismatch restoring partitioned variable '{Owner.Name}'.",
                reader.Prefix, objectPath, key, $"{DTypes.GetName(Owner.DType)} {Owner.FullShape}", $"{DTypes.GetName(info.DType)} {info.Shape}");
        // Each local part reads only its own region, assembled from whichever stored slices intersect it.
        foreach (var part in Owner.Parts) reader.ReadSliceIntoVariable(key, part.Slice, part.Variable);
    }
}

using System.Globalization;
using System.Text;

namespace CheckpointGpu.Format;

/// <summary>
/// The shape of a stored tensor: dimension sizes, outermost first (row-major / C order). Rank 0 is a scalar.
/// Source: <c>tensor_shape.proto</c>; spec section 3.1.
/// </summary>
/// <remarks>
/// Immutable value type with value equality. <c>default(TensorShape)</c> equals <see cref="Scalar"/>.
/// Constructing from user input validates that every dimension is ≥ 0; shapes decoded from files are
/// validated by the reader before they reach a <see cref="TensorShape"/>.
/// </remarks>
public readonly struct TensorShape : IEquatable<TensorShape>
{
    private readonly long[]? _dims;

    /// <summary>Creates a shape from dimension sizes (outermost first).</summary>
    /// <param name="dims">Dimension sizes; each must be ≥ 0. An empty array gives a scalar.</param>
    /// <exception cref="ArgumentNullException"><paramref name="dims"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A dimension is negative.</exception>
    public TensorShape(params long[] dims)
    {
        ArgumentNullException.ThrowIfNull(dims);
        foreach (var d in dims) ArgumentOutOfRangeException.ThrowIfNegative(d, nameof(dims));
        _dims = dims.Length == 0 ? null : (long[])dims.Clone();
    }

    /// <summary>Creates a shape from dimension sizes (outermost first).</summary>
    /// <param name="dims">Dimension sizes; each must be ≥ 0.</param>
    /// <exception cref="ArgumentNullException"><paramref name="dims"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A dimension is negative.</exception>
    public TensorShape(IEnumerable<long> dims) : this((dims ?? throw new ArgumentNullException(nameof(dims))).ToArray())
    {
    }

    /// <summary>The rank-0 shape <c>[]</c>.</summary>
    public static TensorShape Scalar => default;

    /// <summary>Dimension sizes, outermost first.</summary>
    public IReadOnlyList<long> Dims => _dims ?? (IReadOnlyList<long>)Array.Empty<long>();

    /// <summary>Number of dimensions.</summary>
    public int Rank => _dims?.Length ?? 0;

    /// <summary>Returns dimension <paramref name="index"/>.</summary>
    /// <param name="index">0-based dimension index, outermost first.</param>
    public long this[int index] => (_dims ?? Array.Empty<long>())[index];

    /// <summary>Number of elements: the product of the dimensions (1 for a scalar, 0 if any dimension is 0).</summary>
    /// <exception cref="OverflowException">The product does not fit in a signed 64-bit integer.</exception>
    public long ElementCount
    {
        get
        {
            if (_dims is null) return 1;
            long n = 1;
            foreach (var d in _dims) if (d == 0) return 0;
            foreach (var d in _dims) n = checked(n * d);
            return n;
        }
    }

    /// <summary>Tries to compute <see cref="ElementCount"/> without throwing.</summary>
    /// <param name="count">The element count, or 0 on overflow.</param>
    /// <returns>False when the product overflows a signed 64-bit integer.</returns>
    public bool TryGetElementCount(out long count)
    {
        try { count = ElementCount; return true; }
        catch (OverflowException) { count = 0; return false; }
    }

    internal ReadOnlySpan<long> AsSpan() => _dims;

    /// <summary>Formats as <c>[5, 30]</c>; a scalar is <c>[]</c>.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder("[");
        if (_dims is not null)
        {
            for (var i = 0; i < _dims.Length; i++)
            {
                if (i > 0) sb.Append(", ");
                sb.Append(_dims[i].ToString(CultureInfo.InvariantCulture));
            }
        }
        return sb.Append(']').ToString();
    }

    /// <inheritdoc/>
    public bool Equals(TensorShape other) => AsSpan().SequenceEqual(other.AsSpan());

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is TensorShape other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode()
    {
        var h = new HashCode();
        h.Add(Rank);
        foreach (var d in AsSpan()) h.Add(d);
        return h.ToHashCode();
    }

    /// <summary>Value equality.</summary>
    public static bool operator ==(TensorShape left, TensorShape right) => left.Equals(right);

    /// <summary>Value inequality.</summary>
    public static bool operator !=(TensorShape left, TensorShape right) => !left.Equals(right);
}

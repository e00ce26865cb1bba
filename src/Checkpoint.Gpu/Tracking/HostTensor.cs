using System.Runtime.InteropServices;
using System.Text;
using CheckpointGpu.Format;

namespace CheckpointGpu;

/// <summary>
/// A tensor value in host memory: a fixed-size payload (row-major, little-endian elements) or, for
/// <see cref="DType.String"/>, a list of byte strings. Used for custom trackable state (<see cref="TrackableState"/>,
/// <see cref="HostTensorValue"/>), such as a data-iterator position or an RNG state.
/// </summary>
/// <remarks>Immutable after construction (the factories copy their input). Thread-safe.</remarks>
public sealed class HostTensor
{
    private readonly byte[] _bytes;
    private readonly byte[][]? _strings;

    private HostTensor(DType dtype, TensorShape shape, byte[] bytes, byte[][]? strings)
    {
        DType = dtype;
        Shape = shape;
        _bytes = bytes;
        _strings = strings;
    }

    /// <summary>Element type.</summary>
    public DType DType { get; }

    /// <summary>Shape, outermost dimension first.</summary>
    public TensorShape Shape { get; }

    /// <summary>The payload of a fixed-size tensor, <c>ElementCount × element size</c> bytes; empty for strings.</summary>
    public ReadOnlyMemory<byte> Bytes => _bytes;

    /// <summary>The elements of a <see cref="DType.String"/> tensor, row-major; empty for other dtypes.</summary>
    public IReadOnlyList<byte[]> Strings => _strings ?? [];

    /// <summary>Creates a fixed-size tensor from raw bytes.</summary>
    /// <param name="dtype">A fixed-size dtype.</param>
    /// <param name="shape">Shape.</param>
    /// <param name="bytes">Row-major little-endian payload of exactly <c>ElementCount × element size</c> bytes (copied).</param>
    /// <returns>The tensor.</returns>
    /// <exception cref="ArgumentException"><paramref name="dtype"/> is not fixed-size or the length is wrong.</exception>
    public static HostTensor FromBytes(DType dtype, TensorShape shape, ReadOnlySpan<byte> bytes)
    {
        if (!DTypes.IsFixedSize(dtype))
            throw new ArgumentException($"dtype {DTypes.GetName(dtype)} is not fixed-size; use FromStrings for strings.", nameof(dtype));
        var expected = checked(shape.ElementCount * DTypes.GetElementSize(dtype));
        if (bytes.Length != expected)
            throw new ArgumentException($"Expected {expected} bytes for {DTypes.GetName(dtype)} {shape}, got {bytes.Length}.", nameof(bytes));
        return new HostTensor(dtype, shape, bytes.ToArray(), null);
    }

    /// <summary>Creates a fixed-size tensor from typed values.</summary>
    /// <typeparam name="T">Element type: float, double, int, long, byte, sbyte, short, ushort, uint, ulong, bool or Half.</typeparam>
    /// <param name="values">Row-major elements (copied).</param>
    /// <param name="shape">Shape; <see langword="null"/> means a vector of <c>values.Length</c> (a scalar when given one value is not implied).</param>
    /// <returns>The tensor.</returns>
    /// <exception cref="ArgumentException">The element count does not match <paramref name="shape"/>.</exception>
    /// <exception cref="NotSupportedException"><typeparamref name="T"/> has no TensorFlow dtype.</exception>
    public static HostTensor FromValues<T>(ReadOnlySpan<T> values, TensorShape? shape = null) where T : unmanaged
        => FromBytes(DTypeMap.Of<T>(), shape ?? new TensorShape(values.Length), MemoryMarshal.AsBytes(values));

    /// <summary>Creates a scalar of one typed value.</summary>
    /// <typeparam name="T">Element type (see <see cref="FromValues{T}(ReadOnlySpan{T}, TensorShape?)"/>).</typeparam>
    /// <param name="value">The value.</param>
    /// <returns>The tensor.</returns>
    public static HostTensor Scalar<T>(T value) where T : unmanaged => FromValues([value], TensorShape.Scalar);

    /// <summary>Creates a <see cref="DType.String"/> scalar holding the UTF-8 bytes of <paramref name="value"/> (TF's <c>PythonState</c> payload).</summary>
    /// <param name="value">The text.</param>
    /// <returns>The tensor.</returns>
    public static HostTensor FromString(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        return new HostTensor(DType.String, TensorShape.Scalar, [], [Encoding.UTF8.GetBytes(value)]);
    }

    /// <summary>Creates a <see cref="DType.String"/> tensor of byte strings.</summary>
    /// <param name="shape">Shape; its element count must equal the number of strings.</param>
    /// <param name="values">Elements, row-major (copied; arbitrary bytes).</param>
    /// <returns>The tensor.</returns>
    /// <exception cref="ArgumentException">The counts differ.</exception>
    public static HostTensor FromStrings(TensorShape shape, IEnumerable<ReadOnlyMemory<byte>> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var arr = values.Select(v => v.ToArray()).ToArray();
        if (arr.Length != shape.ElementCount)
            throw new ArgumentException($"Shape {shape} needs {shape.ElementCount} strings, got {arr.Length}.", nameof(values));
        return new HostTensor(DType.String, shape, [], arr);
    }

    /// <summary>Copies the elements out as <typeparamref name="T"/>.</summary>
    /// <typeparam name="T">Must match <see cref="DType"/>.</typeparam>
    /// <returns>Row-major elements.</returns>
    /// <exception cref="InvalidOperationException"><typeparamref name="T"/> does not match <see cref="DType"/>.</exception>
    public T[] ToArray<T>() where T : unmanaged
    {
        if (DTypeMap.Of<T>() != DType)
            throw new InvalidOperationException($"Tensor dtype is {DTypes.GetName(DType)}, not {typeof(T).Name}.");
        return MemoryMarshal.Cast<byte, T>(_bytes).ToArray();
    }

    /// <summary>Decodes string element <paramref name="index"/> as UTF-8.</summary>
    /// <param name="index">Row-major element index.</param>
    /// <returns>The text.</returns>
    /// <exception cref="InvalidOperationException">The tensor is not a string tensor.</exception>
    public string GetString(int index = 0)
    {
        if (_strings is null) throw new InvalidOperationException($"Tensor dtype is {DTypes.GetName(DType)}, not string.");
        return Encoding.UTF8.GetString(_strings[index]);
    }

    /// <inheritdoc/>
    public override string ToString() => $"HostTensor({DTypes.GetName(DType)} {Shape})";

    internal static HostTensor FromOwnedBytes(DType dtype, TensorShape shape, byte[] bytes) => new(dtype, shape, bytes, null);

    internal static HostTensor FromOwnedStrings(TensorShape shape, byte[][] strings) => new(DType.String, shape, [], strings);
}

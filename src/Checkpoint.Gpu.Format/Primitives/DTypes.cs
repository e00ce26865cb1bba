using System.Diagnostics.CodeAnalysis;

namespace CheckpointGpu.Format;

/// <summary>
/// Facts about <see cref="DType"/> values: element width in bytes and TensorFlow's Python names
/// (<c>tf.float32.name</c> etc.). Source: <c>types.proto</c>, spec sections 4.2 and 5.
/// </summary>
/// <remarks>Stateless and thread-safe.</remarks>
public static class DTypes
{
    /// <summary>Returns true when <paramref name="dtype"/> is a value TensorFlow defines (including resource/variant).</summary>
    /// <param name="dtype">The dtype to check.</param>
    public static bool IsDefined(DType dtype) => dtype is >= DType.Float and <= DType.Float8E4M3FNUZ or DType.Float8E5M2FNUZ or DType.Int4 or DType.UInt4;

    /// <summary>
    /// Returns true for "memcpy-able" dtypes whose payload is <c>elements × width</c> bytes (everything but
    /// string, resource, variant and invalid/unknown values).
    /// </summary>
    /// <param name="dtype">The dtype to check.</param>
    public static bool IsFixedSize(DType dtype) => GetElementSizeOrZero(dtype) != 0;

    /// <summary>Width of one element in bytes for fixed-size dtypes.</summary>
    /// <param name="dtype">A fixed-size dtype.</param>
    /// <returns>1, 2, 4, 8 or 16.</returns>
    /// <exception cref="ArgumentException"><paramref name="dtype"/> is not fixed-size (string, variant, resource, invalid or unknown).</exception>
    public static int GetElementSize(DType dtype)
    {
        var size = GetElementSizeOrZero(dtype);
        if (size == 0)
            throw new ArgumentException($"dtype {GetName(dtype)} has no fixed element size.", nameof(dtype));
        return size;
    }

    /// <summary>Width of one element in bytes, or 0 for string, variant, resource, invalid and unknown values.</summary>
    /// <param name="dtype">Any dtype value.</param>
    public static int GetElementSizeOrZero(DType dtype) => dtype switch
    {
        DType.Float or DType.Int32 or DType.UInt32 or DType.QInt32 => 4,
        DType.Double or DType.Int64 or DType.UInt64 or DType.Complex64 => 8,
        DType.Complex128 => 16,
        DType.Int16 or DType.UInt16 or DType.QInt16 or DType.QUInt16 or DType.BFloat16 or DType.Half => 2,
        DType.Int8 or DType.UInt8 or DType.QInt8 or DType.QUInt8 or DType.Bool => 1,
        DType.Float8E5M2 or DType.Float8E4M3FN or DType.Float8E4M3FNUZ or DType.Float8E5M2FNUZ or DType.Int4 or DType.UInt4 => 1,
        _ => 0,
    };

    /// <summary>
    /// Size in bytes of one byte-swap unit for big-endian files (component width: complex64 swaps each
    /// 4-byte half); 1 means no swap. Source: <c>byte_swap_tensor.cc</c>, spec section 4.7.
    /// </summary>
    internal static int GetSwapUnit(DType dtype) => dtype switch
    {
        DType.Complex64 => 4,
        DType.Complex128 => 8,
        _ => GetElementSizeOrZero(dtype),
    };

    /// <summary>TensorFlow's Python name (<c>float32</c>, <c>int64</c>, <c>half</c> → <c>float16</c>, …); <c>dtype_N</c> for unknown values.</summary>
    /// <param name="dtype">Any dtype value.</param>
    public static string GetName(DType dtype) => dtype switch
    {
        DType.Invalid => "invalid",
        DType.Float => "float32",
        DType.Double => "float64",
        DType.Int32 => "int32",
        DType.UInt8 => "uint8",
        DType.Int16 => "int16",
        DType.Int8 => "int8",
        DType.String => "string",
        DType.Complex64 => "complex64",
        DType.Int64 => "int64",
        DType.Bool => "bool",
        DType.QInt8 => "qint8",
        DType.QUInt8 => "quint8",
        DType.QInt32 => "qint32",
        DType.BFloat16 => "bfloat16",
        DType.QInt16 => "qint16",
        DType.QUInt16 => "quint16",
        DType.UInt16 => "uint16",
        DType.Complex128 => "complex128",
        DType.Half => "float16",
        DType.Resource => "resource",
        DType.Variant => "variant",
        DType.UInt32 => "uint32",
        DType.UInt64 => "uint64",
        DType.Float8E5M2 => "float8_e5m2",
        DType.Float8E4M3FN => "float8_e4m3fn",
        DType.Float8E4M3FNUZ => "float8_e4m3fnuz",
        DType.Float8E5M2FNUZ => "float8_e5m2fnuz",
        DType.Int4 => "int4",
        DType.UInt4 => "uint4",
        _ => "dtype_" + ((int)dtype).ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <summary>
    /// Parses a TensorFlow Python dtype name (<c>float32</c>, <c>float</c>, <c>half</c>, <c>float16</c>, …),
    /// a <c>DT_*</c> enum name, or a C# <see cref="DType"/> member name (case-insensitive).
    /// </summary>
    /// <param name="name">The name to parse.</param>
    /// <param name="dtype">The parsed dtype, or <see cref="DType.Invalid"/>.</param>
    /// <returns>True when <paramref name="name"/> names a defined dtype.</returns>
    public static bool TryParse([NotNullWhen(true)] string? name, out DType dtype)
    {
        dtype = DType.Invalid;
        if (string.IsNullOrWhiteSpace(name)) return false;
        var n = name.Trim().ToLowerInvariant();
        if (n.StartsWith("dt_", StringComparison.Ordinal)) n = n[3..];
        n = n switch
        {
            "float" => "float32",
            "double" => "float64",
            "half" => "float16",
            _ => n,
        };
        foreach (var candidate in Enum.GetValues<DType>())
        {
            if (candidate == DType.Invalid) continue;
            if (string.Equals(GetName(candidate), n, StringComparison.Ordinal)
                || string.Equals(candidate.ToString(), name.Trim(), StringComparison.OrdinalIgnoreCase))
            {
                dtype = candidate;
                return true;
            }
        }
        return false;
    }
}

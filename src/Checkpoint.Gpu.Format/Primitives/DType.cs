namespace CheckpointGpu.Format;

/// <summary>
/// Element type of a stored tensor. Numeric values are TensorFlow's <c>DataType</c> wire numbers
/// (<c>tensorflow/core/framework/types.proto</c>; spec section 5). Note the easy-to-miss order:
/// <see cref="UInt8"/> = 4 but <see cref="UInt16"/> = 17, <see cref="Half"/> = 19, <see cref="BFloat16"/> = 14.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1720:Identifier contains type name",
    Justification = "Member names mirror TensorFlow's dtype names (DT_FLOAT, DT_INT32, DT_STRING, ...), which other layers code against.")]
public enum DType
{
    /// <summary>DT_INVALID (0): never valid in a bundle.</summary>
    Invalid = 0,
    /// <summary>DT_FLOAT (1): IEEE-754 binary32, 4 bytes.</summary>
    Float = 1,
    /// <summary>DT_DOUBLE (2): IEEE-754 binary64, 8 bytes.</summary>
    Double = 2,
    /// <summary>DT_INT32 (3): 4 bytes.</summary>
    Int32 = 3,
    /// <summary>DT_UINT8 (4): 1 byte.</summary>
    UInt8 = 4,
    /// <summary>DT_INT16 (5): 2 bytes.</summary>
    Int16 = 5,
    /// <summary>DT_INT8 (6): 1 byte.</summary>
    Int8 = 6,
    /// <summary>DT_STRING (7): variable-length byte strings (spec section 4.3).</summary>
    String = 7,
    /// <summary>DT_COMPLEX64 (8): (real, imag) float pair, 8 bytes.</summary>
    Complex64 = 8,
    /// <summary>DT_INT64 (9): 8 bytes.</summary>
    Int64 = 9,
    /// <summary>DT_BOOL (10): 1 byte, 0 or 1.</summary>
    Bool = 10,
    /// <summary>DT_QINT8 (11): quantized, 1 byte.</summary>
    QInt8 = 11,
    /// <summary>DT_QUINT8 (12): quantized, 1 byte.</summary>
    QUInt8 = 12,
    /// <summary>DT_QINT32 (13): quantized, 4 bytes.</summary>
    QInt32 = 13,
    /// <summary>DT_BFLOAT16 (14): upper 16 bits of a binary32, 2 bytes.</summary>
    BFloat16 = 14,
    /// <summary>DT_QINT16 (15): quantized, 2 bytes.</summary>
    QInt16 = 15,
    /// <summary>DT_QUINT16 (16): quantized, 2 bytes.</summary>
    QUInt16 = 16,
    /// <summary>DT_UINT16 (17): 2 bytes.</summary>
    UInt16 = 17,
    /// <summary>DT_COMPLEX128 (18): (real, imag) double pair, 16 bytes.</summary>
    Complex128 = 18,
    /// <summary>DT_HALF (19): IEEE-754 binary16, 2 bytes.</summary>
    Half = 19,
    /// <summary>DT_RESOURCE (20): never stored in a bundle.</summary>
    Resource = 20,
    /// <summary>DT_VARIANT (21): serialized VariantTensorDataProto elements (spec section 4.4).</summary>
    Variant = 21,
    /// <summary>DT_UINT32 (22): 4 bytes.</summary>
    UInt32 = 22,
    /// <summary>DT_UINT64 (23): 8 bytes.</summary>
    UInt64 = 23,
    /// <summary>DT_FLOAT8_E5M2 (24): 1 byte (width UNVERIFIED in the spec; assumed one element per byte).</summary>
    Float8E5M2 = 24,
    /// <summary>DT_FLOAT8_E4M3FN (25): 1 byte (assumed).</summary>
    Float8E4M3FN = 25,
    /// <summary>DT_FLOAT8_E4M3FNUZ (26): 1 byte (assumed).</summary>
    Float8E4M3FNUZ = 26,
    /// <summary>DT_FLOAT8_E5M2FNUZ (28): 1 byte (assumed).</summary>
    Float8E5M2FNUZ = 28,
    /// <summary>DT_INT4 (29): 1 byte per element (assumed).</summary>
    Int4 = 29,
    /// <summary>DT_UINT4 (30): 1 byte per element (assumed).</summary>
    UInt4 = 30,
}

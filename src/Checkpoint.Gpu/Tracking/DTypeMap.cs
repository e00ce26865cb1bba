using CheckpointGpu.Format;

namespace CheckpointGpu;

/// <summary>Maps CLR element types to TensorFlow dtypes.</summary>
internal static class DTypeMap
{
    public static DType Of<T>() where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return DType.Float;
        if (typeof(T) == typeof(double)) return DType.Double;
        if (typeof(T) == typeof(int)) return DType.Int32;
        if (typeof(T) == typeof(long)) return DType.Int64;
        if (typeof(T) == typeof(byte)) return DType.UInt8;
        if (typeof(T) == typeof(sbyte)) return DType.Int8;
        if (typeof(T) == typeof(short)) return DType.Int16;
        if (typeof(T) == typeof(ushort)) return DType.UInt16;
        if (typeof(T) == typeof(uint)) return DType.UInt32;
        if (typeof(T) == typeof(ulong)) return DType.UInt64;
        if (typeof(T) == typeof(bool)) return DType.Bool;
        if (typeof(T) == typeof(Half)) return DType.Half;
        throw new NotSupportedException($"{typeof(T).Name} has no TensorFlow dtype.");
    }
}

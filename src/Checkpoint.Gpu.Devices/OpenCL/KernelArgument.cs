namespace CheckpointGpu.Devices.OpenCL;

/// <summary>One argument of an OpenCL kernel launch: a device buffer (passed as its <c>cl_mem</c>) or a scalar passed by value.</summary>
/// <remarks>Scalars must match the kernel's C type exactly (<c>int</c>/<c>uint</c> 4 bytes, <c>long</c>/<c>ulong</c> 8, <c>float</c> 4, <c>uchar</c> 1). Immutable.</remarks>
public readonly struct KernelArgument
{
    private KernelArgument(DeviceBuffer? buffer, ulong bits, int sizeInBytes)
    {
        Buffer = buffer;
        Bits = bits;
        SizeInBytes = sizeInBytes;
    }

    /// <summary>The buffer for a buffer argument, else <see langword="null"/>.</summary>
    public DeviceBuffer? Buffer { get; }

    /// <summary>Size of a scalar in bytes (0 for buffers).</summary>
    public int SizeInBytes { get; }

    internal ulong Bits { get; }

    /// <summary>A <c>__global</c> pointer argument; the buffer must belong to the launching accelerator and is kept alive until the launch completes.</summary>
    /// <param name="buffer">The buffer.</param>
    /// <returns>The argument.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="buffer"/> is null.</exception>
    public static KernelArgument FromBuffer(DeviceBuffer buffer)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        return new KernelArgument(buffer, 0, 0);
    }

    /// <summary>An <c>int</c> argument.</summary>
    /// <param name="value">The value.</param>
    /// <returns>The argument.</returns>
    public static KernelArgument FromInt32(int value) => new(null, (uint)value, sizeof(int));

    /// <summary>A <c>uint</c> argument.</summary>
    /// <param name="value">The value.</param>
    /// <returns>The argument.</returns>
    public static KernelArgument FromUInt32(uint value) => new(null, value, sizeof(uint));

    /// <summary>A <c>long</c> argument.</summary>
    /// <param name="value">The value.</param>
    /// <returns>The argument.</returns>
    public static KernelArgument FromInt64(long value) => new(null, (ulong)value, sizeof(long));

    /// <summary>A <c>ulong</c> argument (element counts and offsets).</summary>
    /// <param name="value">The value.</param>
    /// <returns>The argument.</returns>
    public static KernelArgument FromUInt64(ulong value) => new(null, value, sizeof(ulong));

    /// <summary>A <c>float</c> argument.</summary>
    /// <param name="value">The value.</param>
    /// <returns>The argument.</returns>
    public static KernelArgument FromSingle(float value) => new(null, BitConverter.SingleToUInt32Bits(value), sizeof(float));

    /// <summary>A <c>uchar</c> argument.</summary>
    /// <param name="value">The value.</param>
    /// <returns>The argument.</returns>
    public static KernelArgument FromByte(byte value) => new(null, value, sizeof(byte));
}

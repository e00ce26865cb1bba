using System.Diagnostics.CodeAnalysis;

namespace CheckpointGpu.Devices;

/// <summary>Throw sites kept out of hot methods, with the sizes in every message.</summary>
internal static class ThrowHelper
{
    /// <summary>Checks <c>0 ≤ offset</c>, <c>0 ≤ length</c>, <c>offset + length ≤ capacity</c> without overflow.</summary>
    internal static void ThrowIfRangeInvalid(long offsetInBytes, long lengthInBytes, long capacityInBytes, string paramName, string what)
    {
        if (offsetInBytes < 0 || lengthInBytes < 0 || offsetInBytes > capacityInBytes - lengthInBytes)
            ThrowRange(offsetInBytes, lengthInBytes, capacityInBytes, paramName, what);
    }

    [DoesNotReturn]
    private static void ThrowRange(long offset, long length, long capacity, string paramName, string what) =>
        throw new ArgumentOutOfRangeException(paramName,
            $"The range at offset {offset} bytes with length {length} bytes does not fit in the {what} of {capacity} bytes.");

    [DoesNotReturn]
    internal static void ThrowForeignView(string paramName, DeviceBuffer buffer, Accelerator expected) =>
        throw new ArgumentException(
            $"The view's buffer belongs to accelerator '{buffer.Accelerator.Name}' ({buffer.Accelerator.Kind}), not to this stream's accelerator '{expected.Name}' ({expected.Kind}).",
            paramName);

    [DoesNotReturn]
    internal static void ThrowDefaultView(string paramName) =>
        throw new ArgumentException("The view is default(DeviceView): it has no buffer.", paramName);
}

using System.Diagnostics;

namespace CheckpointGpu.Devices;

/// <summary>A byte range of a <see cref="DeviceBuffer"/>: the buffer, an offset and a length, both in bytes.</summary>
/// <remarks>
/// A value type, like ILGPU's <c>ArrayView</c>. Creating a view checks its bounds once
/// (<see cref="DeviceBuffer.View(long, long)"/>); streams then check only that the buffer belongs to their accelerator
/// and is not disposed. <c>default(DeviceView)</c> has no buffer (<see cref="IsValid"/> is <see langword="false"/>)
/// and is rejected by every stream operation. Immutable and thread-safe.
/// </remarks>
[DebuggerDisplay("DeviceView [{OffsetInBytes}, +{LengthInBytes}) of {Buffer}")]
public readonly struct DeviceView : IEquatable<DeviceView>
{
    internal DeviceView(DeviceBuffer buffer, long offsetInBytes, long lengthInBytes)
    {
        Buffer = buffer;
        OffsetInBytes = offsetInBytes;
        LengthInBytes = lengthInBytes;
    }

    /// <summary>The buffer this view points into, or <see langword="null"/> for <c>default</c>.</summary>
    public DeviceBuffer? Buffer { get; }

    /// <summary>Start of the view within <see cref="Buffer"/>, in bytes.</summary>
    public long OffsetInBytes { get; }

    /// <summary>Length of the view, in bytes.</summary>
    public long LengthInBytes { get; }

    /// <summary>True when the view covers no bytes (including <c>default</c>).</summary>
    public bool IsEmpty => LengthInBytes == 0;

    /// <summary>True when the view refers to a buffer.</summary>
    public bool IsValid => Buffer is not null;

    /// <summary>A sub-range of this view.</summary>
    /// <param name="offsetInBytes">Start relative to this view, in bytes.</param>
    /// <param name="lengthInBytes">Length in bytes.</param>
    /// <returns>The sub-view.</returns>
    /// <exception cref="InvalidOperationException">This view is <c>default</c>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The range does not lie within this view.</exception>
    public DeviceView SubView(long offsetInBytes, long lengthInBytes)
    {
        if (Buffer is null) throw new InvalidOperationException("SubView on a default DeviceView (it has no buffer).");
        ThrowHelper.ThrowIfRangeInvalid(offsetInBytes, lengthInBytes, LengthInBytes, nameof(offsetInBytes), "view");
        return new DeviceView(Buffer, OffsetInBytes + offsetInBytes, lengthInBytes);
    }

    /// <inheritdoc/>
    public bool Equals(DeviceView other) =>
        ReferenceEquals(Buffer, other.Buffer) && OffsetInBytes == other.OffsetInBytes && LengthInBytes == other.LengthInBytes;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is DeviceView other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Buffer, OffsetInBytes, LengthInBytes);

    /// <summary>Value equality: same buffer instance, offset and length.</summary>
    public static bool operator ==(DeviceView left, DeviceView right) => left.Equals(right);

    /// <summary>Value inequality.</summary>
    public static bool operator !=(DeviceView left, DeviceView right) => !left.Equals(right);

    /// <inheritdoc/>
    public override string ToString() => $"DeviceView[{OffsetInBytes}, +{LengthInBytes} bytes]";
}

using CheckpointGpu.Devices;

namespace CheckpointGpu.Pipeline;

/// <summary>The bytes of one tensor to save: a device view, host memory, or an encoded payload with its CRC.</summary>
/// <remarks>Immutable and thread-safe. The memory a source refers to must stay alive and (for device and host
/// sources) unchanged until the item is staged (<see cref="SaveHandle.WaitUntilStagedAsync(int, CancellationToken)"/>).</remarks>
public sealed class SaveSource
{
    private SaveSource(SaveSourceKind kind, DeviceView device, ReadOnlyMemory<byte> host, uint maskedCrc32C, long lengthInBytes)
    {
        Kind = kind;
        Device = device;
        Host = host;
        MaskedCrc32C = maskedCrc32C;
        LengthInBytes = lengthInBytes;
    }

    /// <summary>The kind of source.</summary>
    public SaveSourceKind Kind { get; }

    /// <summary>The device range (for <see cref="SaveSourceKind.Device"/>), else <c>default</c>.</summary>
    public DeviceView Device { get; }

    /// <summary>The host bytes (for <see cref="SaveSourceKind.Host"/> and <see cref="SaveSourceKind.Encoded"/>), else empty.</summary>
    public ReadOnlyMemory<byte> Host { get; }

    /// <summary>The entry CRC as stored (masked), for <see cref="SaveSourceKind.Encoded"/>; 0 otherwise.</summary>
    public uint MaskedCrc32C { get; }

    /// <summary>Payload length in bytes.</summary>
    public long LengthInBytes { get; }

    /// <summary>A source reading accelerator memory.</summary>
    /// <param name="view">The device bytes; must belong to the pipeline's accelerator.</param>
    /// <returns>The source.</returns>
    /// <exception cref="ArgumentException"><paramref name="view"/> is <c>default</c>.</exception>
    public static SaveSource FromDevice(DeviceView view)
    {
        if (!view.IsValid) throw new ArgumentException("The device view is default (it has no buffer).", nameof(view));
        return new SaveSource(SaveSourceKind.Device, view, default, 0, view.LengthInBytes);
    }

    /// <summary>A source reading host memory (elements row-major, little-endian).</summary>
    /// <param name="bytes">The bytes; not copied, so keep them unchanged until the item is staged.</param>
    /// <returns>The source.</returns>
    public static SaveSource FromHost(ReadOnlyMemory<byte> bytes) => new(SaveSourceKind.Host, default, bytes, 0, bytes.Length);

    /// <summary>An already-encoded payload written unchanged (see <see cref="EncodedTensor"/> for DT_STRING).</summary>
    /// <param name="payload">The payload bytes exactly as they go to the data file.</param>
    /// <param name="maskedCrc32C">The entry CRC as stored (masked), computed by the encoder with the dtype's algorithm (spec §4.3–4.6).</param>
    /// <returns>The source.</returns>
    public static SaveSource FromEncoded(ReadOnlyMemory<byte> payload, uint maskedCrc32C) =>
        new(SaveSourceKind.Encoded, default, payload, maskedCrc32C, payload.Length);

    /// <summary>Shorthand for <see cref="FromEncoded(ReadOnlyMemory{byte}, uint)"/> of an <see cref="EncodedTensor"/>.</summary>
    /// <param name="tensor">The encoded tensor.</param>
    /// <returns>The source.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="tensor"/> is null.</exception>
    public static SaveSource FromEncoded(EncodedTensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return FromEncoded(tensor.Payload, tensor.MaskedCrc32C);
    }
}

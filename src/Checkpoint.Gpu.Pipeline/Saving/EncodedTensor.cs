using System.Buffers.Binary;
using CheckpointGpu.Format;
using Crc = CheckpointGpu.Format.MaskedCrc32C;

namespace CheckpointGpu.Pipeline;

/// <summary>
/// A DT_STRING (or other variable-length) payload encoded exactly as TensorFlow stores it, with its entry CRC
/// (spec §4.3): varint64 lengths, the masked CRC of the lengths (as fixed 4/8-byte values), then the raw bytes.
/// </summary>
/// <remarks>Immutable; the payload array is owned by this object.</remarks>
public sealed class EncodedTensor
{
    private EncodedTensor(byte[] payload, uint maskedCrc32C)
    {
        Payload = payload;
        MaskedCrc32C = maskedCrc32C;
    }

    /// <summary>The payload bytes as they go to the data file.</summary>
    public ReadOnlyMemory<byte> Payload { get; }

    /// <summary>The entry CRC as stored (masked).</summary>
    public uint MaskedCrc32C { get; }

    /// <summary>Encodes a DT_STRING tensor, byte-identical to <see cref="TensorBundleWriter.AddStrings"/>.</summary>
    /// <param name="values">The elements, row-major, as raw bytes.</param>
    /// <returns>The encoded payload and its CRC.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="values"/> or an element is null.</exception>
    public static EncodedTensor FromStrings(IReadOnlyList<byte[]> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        long size = 4;
        foreach (var v in values)
        {
            ArgumentNullException.ThrowIfNull(v, nameof(values));
            size = checked(size + VarintLength((ulong)v.Length) + v.Length);
        }
        var payload = new byte[size];
        var pos = 0;
        var crc = 0u;
        Span<byte> len4 = stackalloc byte[4];
        foreach (var v in values)
        {
            var x = (ulong)v.Length;
            while (x >= 0x80) { payload[pos++] = (byte)(x | 0x80); x >>= 7; }
            payload[pos++] = (byte)x;
            BinaryPrimitives.WriteUInt32LittleEndian(len4, (uint)v.Length); // lengths < 2^32 hash as 4 bytes
            crc = Crc.Extend(crc, len4);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(pos, 4), Crc.Mask(crc));
        crc = Crc.Extend(crc, payload.AsSpan(pos, 4));
        pos += 4;
        foreach (var v in values)
        {
            v.CopyTo(payload, pos);
            crc = Crc.Extend(crc, v);
            pos += v.Length;
        }
        return new EncodedTensor(payload, Crc.Mask(crc));
    }

    private static int VarintLength(ulong v)
    {
        var n = 1;
        while (v >= 0x80) { v >>= 7; n++; }
        return n;
    }
}

namespace CheckpointGpu.Format;

/// <summary>Byte order of tensor payloads in the data files (<c>BundleHeaderProto.Endianness</c>; spec section 3.1).</summary>
public enum BundleEndianness
{
    /// <summary>Little-endian payloads (every TF-written file in practice).</summary>
    Little = 0,

    /// <summary>Big-endian payloads; the reader byte-swaps fixed-size elements after verifying the CRC.</summary>
    Big = 1,
}

namespace CheckpointGpu.Pipeline.Saving;

/// <summary>
/// Concatenation of finished CRC-32C values (zlib's <c>crc32_combine</c> idea): crc(A‖B) = (x^(8·|B|) · crc(A)) mod P ⊕ crc(B)
/// in the reflected GF(2) representation. Lets pieces of one tensor be checksummed in parallel (by different
/// writers) and combined in file order afterwards.
/// </summary>
internal static class Crc32CCombine
{
    private const uint ReflectedPolynomial = 0x82F63B78u;

    /// <summary>The CRC-32C of A‖B from crc(A), crc(B) and |B| in bytes.</summary>
    public static uint Combine(uint crcA, uint crcB, long lengthB) => lengthB == 0 ? crcA : MultiplyModP(XPow8N(lengthB), crcA) ^ crcB;

    private static uint MultiplyModP(uint a, uint b)
    {
        uint m = 1u << 31, p = 0;
        while (true)
        {
            if ((a & m) != 0)
            {
                p ^= b;
                if ((a & (m - 1)) == 0) break;
            }
            m >>= 1;
            b = (b & 1) != 0 ? (b >> 1) ^ ReflectedPolynomial : b >> 1;
        }
        return p;
    }

    private static uint XPow8N(long byteCount)
    {
        uint result = 1u << 31; // x^0
        uint power = 1u << 30;  // x^1
        var bits = checked(byteCount * 8);
        while (bits != 0)
        {
            if ((bits & 1) != 0) result = MultiplyModP(power, result);
            power = MultiplyModP(power, power);
            bits >>= 1;
        }
        return result;
    }
}

using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace CheckpointGpu.Format;

/// <summary>
/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, init and final XOR all-ones) and TensorFlow's
/// masking of stored CRCs (<c>tsl/lib/hash/crc32c.h</c>; spec section 2.9).
/// </summary>
/// <remarks>
/// <para>Check values: <c>Compute("123456789") = 0xE3069283</c>; 32 zero bytes → <c>0x8A9136AA</c>;
/// <c>Mask(0) = 0xA282EAD8</c>.</para>
/// <para>Hardware-accelerated through <see cref="BitOperations.Crc32C(uint, ulong)"/> (SSE4.2 / ARMv8 CRC). That
/// instruction has a latency of ~3 cycles, so large inputs are split into three independent lanes whose
/// partial CRCs are combined with a GF(2) multiplication (the zlib <c>crc32_combine</c> idea). Stateless and
/// thread-safe.</para>
/// </remarks>
public static class MaskedCrc32C
{
    private const uint MaskDelta = 0xA282EAD8u;
    private const uint ReflectedPolynomial = 0x82F63B78u;

    // Lane sizes for the three-way interleaved loop. "Shift a register by one lane of zero bytes" is linear over
    // GF(2), so it is tabulated per lane size as 4 × 256 entries (one per byte of the register).
    private const int LargeLane = 8192;
    private const int MediumLane = 1024;
    private const int SmallLane = 128;
    private static readonly uint[] s_shiftLarge = ShiftTable(LargeLane);
    private static readonly uint[] s_shiftMedium = ShiftTable(MediumLane);
    private static readonly uint[] s_shiftSmall = ShiftTable(SmallLane);

    /// <summary>Computes the (unmasked) CRC-32C of <paramref name="data"/>.</summary>
    /// <param name="data">The bytes.</param>
    /// <returns>The standard CRC-32C value.</returns>
    public static uint Compute(ReadOnlySpan<byte> data) => Extend(0, data);

    /// <summary>
    /// Continues <paramref name="crc"/> (a finished CRC-32C value, 0 for "no bytes yet") over
    /// <paramref name="data"/>, as if the inputs were concatenated (TF's <c>crc32c::Extend</c>).
    /// </summary>
    /// <param name="crc">The CRC-32C of the preceding bytes (not masked).</param>
    /// <param name="data">The next bytes.</param>
    /// <returns>The CRC-32C of the concatenation.</returns>
    public static uint Extend(uint crc, ReadOnlySpan<byte> data) => ~Update(~crc, data);

    /// <summary>Masks a CRC for storage: rotate right by 15 bits, then add <c>0xA282EAD8</c>.</summary>
    /// <param name="crc">An unmasked CRC-32C.</param>
    public static uint Mask(uint crc) => BitOperations.RotateRight(crc, 15) + MaskDelta;

    /// <summary>Inverse of <see cref="Mask(uint)"/>.</summary>
    /// <param name="maskedCrc">A masked CRC as stored in a file.</param>
    public static uint Unmask(uint maskedCrc) => BitOperations.RotateLeft(maskedCrc - MaskDelta, 15);

    /// <summary>Computes <c>Mask(Compute(data))</c>.</summary>
    /// <param name="data">The bytes.</param>
    public static uint ComputeMasked(ReadOnlySpan<byte> data) => Mask(Compute(data));

    /// <summary>
    /// The CRC-32C of the concatenation A‖B from <c>crc(A)</c>, <c>crc(B)</c> and the length of B (zlib's
    /// <c>crc32_combine</c>): lets pieces of one payload be checksummed in parallel and joined in order afterwards.
    /// </summary>
    /// <param name="crcA">Unmasked CRC-32C of the first part.</param>
    /// <param name="crcB">Unmasked CRC-32C of the second part.</param>
    /// <param name="lengthB">Length of the second part in bytes (≥ 0).</param>
    /// <returns>The unmasked CRC-32C of A‖B.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="lengthB"/> is negative.</exception>
    public static uint Combine(uint crcA, uint crcB, long lengthB)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(lengthB);
        // Both CRCs include the init/final XOR; by linearity crc(A‖B) = x^(8|B|)·crc(A) ⊕ crc(B) in reflected GF(2).
        return lengthB == 0 ? crcA : MultiplyModP(XPow8N(lengthB), crcA) ^ crcB;
    }

    /// <summary>Updates a raw (pre-inverted, not finalized) CRC register; the hot loop.</summary>
    // Fully optimized from the first call: a restarted process checksums its first gigabytes before tiered compilation
    // would have promoted this loop (tier-0 code ran in the restore profile).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static uint Update(uint state, ReadOnlySpan<byte> data)
    {
        ref var p = ref MemoryMarshal.GetReference(data);
        nint len = data.Length;
        nint i = 0;

        while (len - i >= 3 * LargeLane)
        {
            state = ThreeLanes(state, ref Unsafe.Add(ref p, i), LargeLane, s_shiftLarge);
            i += 3 * LargeLane;
        }
        while (len - i >= 3 * MediumLane)
        {
            state = ThreeLanes(state, ref Unsafe.Add(ref p, i), MediumLane, s_shiftMedium);
            i += 3 * MediumLane;
        }
        while (len - i >= 3 * SmallLane)
        {
            state = ThreeLanes(state, ref Unsafe.Add(ref p, i), SmallLane, s_shiftSmall);
            i += 3 * SmallLane;
        }
        for (; len - i >= 8; i += 8)
            state = BitOperations.Crc32C(state, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref p, i)));
        if (len - i >= 4)
        {
            state = BitOperations.Crc32C(state, Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref p, i)));
            i += 4;
        }
        for (; i < len; i++)
            state = BitOperations.Crc32C(state, Unsafe.Add(ref p, i));
        return state;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint ThreeLanes(uint state, ref byte start, int lane, uint[] shift)
    {
        // Three independent dependency chains keep the CRC unit busy. Lane k>0 starts from a zero register;
        // by linearity, raw(s, A‖B) = shift(raw(s, A), |B|) ⊕ raw(0, B).
        uint c0 = state, c1 = 0, c2 = 0;
        ref var a = ref start;
        ref var b = ref Unsafe.Add(ref start, lane);
        ref var c = ref Unsafe.Add(ref start, 2 * lane);
        for (nint j = 0; j < lane; j += 16)
        {
            c0 = BitOperations.Crc32C(c0, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref a, j)));
            c1 = BitOperations.Crc32C(c1, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref b, j)));
            c2 = BitOperations.Crc32C(c2, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref c, j)));
            c0 = BitOperations.Crc32C(c0, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref a, j + 8)));
            c1 = BitOperations.Crc32C(c1, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref b, j + 8)));
            c2 = BitOperations.Crc32C(c2, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref c, j + 8)));
        }
        return Shift(shift, Shift(shift, c0) ^ c1) ^ c2;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Shift(uint[] table, uint crc)
    {
        ref var t = ref MemoryMarshal.GetArrayDataReference(table);
        return Unsafe.Add(ref t, (int)(crc & 0xFF)) ^ Unsafe.Add(ref t, 256 + (int)((crc >> 8) & 0xFF))
             ^ Unsafe.Add(ref t, 512 + (int)((crc >> 16) & 0xFF)) ^ Unsafe.Add(ref t, 768 + (int)(crc >> 24));
    }

    private static uint[] ShiftTable(int laneBytes)
    {
        var k = XPow8N(laneBytes);
        var table = new uint[1024];
        for (var b = 0; b < 4; b++)
            for (var v = 0; v < 256; v++)
                table[(b * 256) + v] = MultiplyModP(k, (uint)v << (8 * b));
        return table;
    }

    /// <summary>GF(2)[x] product of two reflected 32-bit polynomials modulo the CRC-32C polynomial.</summary>
    internal static uint MultiplyModP(uint a, uint b)
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

    /// <summary>x^(8·<paramref name="byteCount"/>) mod P in reflected form: multiplying a register by it appends that many zero bytes.</summary>
    internal static uint XPow8N(long byteCount)
    {
        // x^1 in reflected representation is 0x40000000; square-and-multiply over the bit count.
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

    /// <summary>Reads a little-endian fixed32.</summary>
    internal static uint ReadLittleEndian(ReadOnlySpan<byte> src) => BinaryPrimitives.ReadUInt32LittleEndian(src);
}

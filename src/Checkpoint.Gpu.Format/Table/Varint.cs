namespace CheckpointGpu.Format.Table;

/// <summary>LevelDB/protobuf base-128 varints (spec section 0.2): 7 data bits per byte, low group first.</summary>
internal static class Varint
{
    public static void Write32(List<byte> dst, uint v) => Write64(dst, v);

    public static void Write64(List<byte> dst, ulong v)
    {
        while (v >= 0x80)
        {
            dst.Add((byte)(v | 0x80));
            v >>= 7;
        }
        dst.Add((byte)v);
    }

    public static int Write64(Span<byte> dst, ulong v)
    {
        var n = 0;
        while (v >= 0x80)
        {
            dst[n++] = (byte)(v | 0x80);
            v >>= 7;
        }
        dst[n++] = (byte)v;
        return n;
    }

    public static int Length(ulong v)
    {
        var n = 1;
        while (v >= 0x80) { v >>= 7; n++; }
        return n;
    }

    /// <summary>Reads a varint32 (≤ 5 bytes, value must fit 32 bits). Returns false on truncation or overlong input.</summary>
    public static bool TryRead32(ReadOnlySpan<byte> src, ref int pos, out uint value)
    {
        value = 0;
        for (var shift = 0; shift <= 28; shift += 7)
        {
            if (pos >= src.Length) return false;
            uint b = src[pos++];
            if (shift == 28 && b > 0x0F) return false;
            value |= (b & 0x7F) << shift;
            if ((b & 0x80) == 0) return true;
        }
        return false;
    }

    /// <summary>Reads a varint64 (≤ 10 bytes). Returns false on truncation or overlong input.</summary>
    public static bool TryRead64(ReadOnlySpan<byte> src, ref int pos, out ulong value)
    {
        value = 0;
        for (var shift = 0; shift <= 63; shift += 7)
        {
            if (pos >= src.Length) return false;
            ulong b = src[pos++];
            if (shift == 63 && b > 1) return false;
            value |= (b & 0x7F) << shift;
            if ((b & 0x80) == 0) return true;
        }
        return false;
    }
}

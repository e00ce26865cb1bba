using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace CheckpointGpu.Format;

/// <summary>One dimension of a <see cref="TensorSlice"/>: a start index and a length (−1 = the whole dimension).</summary>
/// <param name="Start">First index in the dimension (≥ 0; 0 for a whole dimension).</param>
/// <param name="Length">Number of indices, or −1 for the whole dimension.</param>
public readonly record struct TensorSliceExtent(long Start, long Length)
{
    /// <summary>The extent covering a whole dimension (start 0, length −1).</summary>
    public static TensorSliceExtent Full => new(0, -1);

    /// <summary>True when this extent covers the whole dimension (length −1).</summary>
    public bool IsFull => Length == -1;

    /// <summary>Formats as TF's <c>start,length</c> or <c>-</c> for a whole dimension.</summary>
    public override string ToString() => IsFull ? "-" : string.Create(CultureInfo.InvariantCulture, $"{Start},{Length}");
}

/// <summary>
/// A hyper-rectangular part of a partitioned tensor, one extent per dimension
/// (<c>tensor_slice.proto</c>/<c>tensor_slice.cc</c>; spec section 3.4).
/// </summary>
/// <remarks>Immutable, value equality, thread-safe.</remarks>
public sealed class TensorSlice : IEquatable<TensorSlice>
{
    private readonly TensorSliceExtent[] _extents;

    /// <summary>Creates a slice from extents, outermost dimension first.</summary>
    /// <param name="extents">One extent per dimension; start ≥ 0 and length &gt; 0 (or −1 with start 0 for "whole").</param>
    /// <exception cref="ArgumentException">An extent is invalid.</exception>
    public TensorSlice(IEnumerable<TensorSliceExtent> extents)
    {
        ArgumentNullException.ThrowIfNull(extents);
        _extents = extents.ToArray();
        foreach (var e in _extents)
        {
            if (e.IsFull ? e.Start != 0 : e.Start < 0 || e.Length <= 0 || e.Start > long.MaxValue - e.Length)
                throw new ArgumentException($"invalid slice extent {e.Start},{e.Length}.", nameof(extents));
        }
    }

    /// <summary>Creates a slice from extents, outermost dimension first.</summary>
    /// <param name="extents">One extent per dimension.</param>
    /// <exception cref="ArgumentException">An extent is invalid.</exception>
    public TensorSlice(params TensorSliceExtent[] extents) : this((IEnumerable<TensorSliceExtent>)extents)
    {
    }

    /// <summary>A slice covering every dimension of a rank-<paramref name="rank"/> tensor entirely.</summary>
    /// <param name="rank">Number of dimensions.</param>
    public static TensorSlice Full(int rank) => new(Enumerable.Repeat(TensorSliceExtent.Full, rank));

    /// <summary>Extents, outermost dimension first.</summary>
    public IReadOnlyList<TensorSliceExtent> Extents => _extents;

    /// <summary>Number of dimensions.</summary>
    public int Rank => _extents.Length;

    /// <summary>True when every extent is the whole dimension.</summary>
    public bool IsFull => _extents.All(e => e.IsFull);

    /// <summary>True when the slice covers all of <paramref name="fullShape"/> (every extent whole or exactly 0..dim).</summary>
    /// <param name="fullShape">The shape of the full tensor.</param>
    public bool CoversWhole(TensorShape fullShape)
    {
        if (fullShape.Rank != Rank) return false;
        for (var i = 0; i < Rank; i++)
            if (!_extents[i].IsFull && !(_extents[i].Start == 0 && _extents[i].Length == fullShape[i])) return false;
        return true;
    }

    /// <summary>Shape of the slice within <paramref name="fullShape"/>.</summary>
    /// <param name="fullShape">The shape of the full tensor (same rank).</param>
    /// <exception cref="ArgumentException">Rank differs or an extent lies outside the shape.</exception>
    public TensorShape GetSliceShape(TensorShape fullShape)
    {
        if (fullShape.Rank != Rank) throw new ArgumentException($"slice rank {Rank} differs from shape rank {fullShape.Rank}.", nameof(fullShape));
        var dims = new long[Rank];
        for (var i = 0; i < Rank; i++)
        {
            var e = _extents[i];
            if (e.IsFull) { dims[i] = fullShape[i]; continue; }
            if (e.Start > fullShape[i] - e.Length) throw new ArgumentException($"slice extent {e} exceeds dimension {i} of size {fullShape[i]}.", nameof(fullShape));
            dims[i] = e.Length;
        }
        return new TensorShape(dims);
    }

    /// <summary>Formats as TF's slice string, e.g. <c>0,5:-</c> (empty for rank 0).</summary>
    public override string ToString() => string.Join(':', _extents.Select(e => e.ToString()));

    /// <summary>Formats the <c>shape_and_slices</c> spec TF's SaveV2/RestoreV2 use, e.g. <c>10 20 0,5:-</c>.</summary>
    /// <param name="fullShape">The full tensor shape.</param>
    public string ToSpecString(TensorShape fullShape) =>
        string.Join(' ', fullShape.Dims.Select(d => d.ToString(CultureInfo.InvariantCulture))) + " " + ToString();

    /// <inheritdoc/>
    public bool Equals(TensorSlice? other) => other is not null && _extents.AsSpan().SequenceEqual(other._extents);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is TensorSlice s && Equals(s);

    /// <inheritdoc/>
    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (var e in _extents) h.Add(e);
        return h.ToHashCode();
    }

    /// <summary>
    /// TF's slice-entry key (<c>EncodeTensorNameSlice</c>, <c>saved_tensor_slice_util.cc</c> + <c>ordered_code.cc</c>):
    /// <c>00</c>, the escaped name + <c>00 01</c>, the rank, then (start, length) per dimension in OrderedCode's
    /// increasing signed-number form, a whole dimension as (0, −1). Spec section 3.4.
    /// </summary>
    /// <param name="fullName">Key of the full tensor.</param>
    /// <param name="slice">The slice.</param>
    /// <returns>The key bytes (not valid UTF-8 in general).</returns>
    public static byte[] EncodeSliceKey(string fullName, TensorSlice slice)
    {
        ArgumentNullException.ThrowIfNull(fullName);
        ArgumentNullException.ThrowIfNull(slice);
        return EncodeSliceKey(Encoding.UTF8.GetBytes(fullName), slice);
    }

    internal static byte[] EncodeSliceKey(ReadOnlySpan<byte> fullName, TensorSlice slice)
    {
        var buf = new List<byte>(fullName.Length + 8 + slice.Rank * 4);
        WriteNumIncreasing(buf, 0);
        foreach (var b in fullName)
        {
            buf.Add(b);
            if (b == 0x00) buf.Add(0xFF);
            else if (b == 0xFF) buf.Add(0x00);
        }
        buf.Add(0x00);
        buf.Add(0x01);
        WriteNumIncreasing(buf, (ulong)slice.Rank);
        foreach (var e in slice._extents)
        {
            WriteSignedNumIncreasing(buf, e.IsFull ? 0 : e.Start);
            WriteSignedNumIncreasing(buf, e.IsFull ? -1 : e.Length);
        }
        return buf.ToArray();
    }

    /// <summary>Decodes a key made by <see cref="EncodeSliceKey(string, TensorSlice)"/>.</summary>
    /// <param name="key">Raw key bytes.</param>
    /// <param name="fullNameUtf8">The full tensor name bytes.</param>
    /// <param name="slice">The slice.</param>
    /// <returns>False when <paramref name="key"/> is not a well-formed slice key.</returns>
    internal static bool TryDecodeSliceKey(ReadOnlySpan<byte> key, out byte[] fullNameUtf8, out TensorSlice? slice)
    {
        fullNameUtf8 = [];
        slice = null;
        var pos = 0;
        if (!TryReadNumIncreasing(key, ref pos, out var zero) || zero != 0) return false;
        var name = new List<byte>();
        while (true)
        {
            if (pos >= key.Length) return false;
            var b = key[pos++];
            if (b == 0x00)
            {
                if (pos >= key.Length) return false;
                var n = key[pos++];
                if (n == 0x01) break;
                if (n != 0xFF) return false;
                name.Add(0x00);
            }
            else if (b == 0xFF)
            {
                if (pos >= key.Length || key[pos++] != 0x00) return false;
                name.Add(0xFF);
            }
            else name.Add(b);
        }
        if (!TryReadNumIncreasing(key, ref pos, out var rank) || rank > 1024) return false;
        var extents = new TensorSliceExtent[(int)rank];
        for (var i = 0; i < extents.Length; i++)
        {
            if (!TryReadSignedNumIncreasing(key, ref pos, out var start) || !TryReadSignedNumIncreasing(key, ref pos, out var length)) return false;
            if (length == -1) { if (start != 0) return false; extents[i] = TensorSliceExtent.Full; }
            else if (start < 0 || length <= 0 || start > long.MaxValue - length) return false;
            else extents[i] = new TensorSliceExtent(start, length);
        }
        if (pos != key.Length) return false;
        fullNameUtf8 = name.ToArray();
        slice = new TensorSlice(extents);
        return true;
    }

    private static void WriteNumIncreasing(List<byte> buf, ulong v)
    {
        Span<byte> be = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(be, v);
        var len = 8 - (System.Numerics.BitOperations.LeadingZeroCount(v) / 8);
        buf.Add((byte)len);
        for (var i = 8 - len; i < 8; i++) buf.Add(be[i]);
    }

    private static bool TryReadNumIncreasing(ReadOnlySpan<byte> src, ref int pos, out ulong v)
    {
        v = 0;
        if (pos >= src.Length) return false;
        int len = src[pos++];
        if (len > 8 || len > src.Length - pos) return false;
        for (var i = 0; i < len; i++) v = (v << 8) | src[pos++];
        return true;
    }

    // Header bytes XORed into the first two bytes of an n-byte encoding (n = 2..10), from ordered_code.cc's table.
    private static readonly byte[] s_signedHeader0 = [0, 0, 0xC0, 0xE0, 0xF0, 0xF8, 0xFC, 0xFE, 0xFF, 0xFF, 0xFF];
    private static readonly byte[] s_signedHeader1 = [0, 0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0xC0];

    /// <summary>OrderedCode's <c>WriteSignedNumIncreasing</c> of one value (exposed for tests).</summary>
    internal static byte[] EncodeSignedNumIncreasing(long v)
    {
        var buf = new List<byte>(10);
        WriteSignedNumIncreasing(buf, v);
        return buf.ToArray();
    }

    /// <summary>OrderedCode's <c>ReadSignedNumIncreasing</c> of one value (exposed for tests).</summary>
    internal static bool TryDecodeSignedNumIncreasing(ReadOnlySpan<byte> src, out long v)
    {
        var pos = 0;
        return TryReadSignedNumIncreasing(src, ref pos, out v) && pos == src.Length;
    }

    private static void WriteSignedNumIncreasing(List<byte> buf, long v)
    {
        var x = v < 0 ? ~v : v;
        if (x < 64)
        {
            buf.Add((byte)(0x80 ^ (byte)(v & 0xFF)));
            return;
        }
        var n = 10;
        for (var k = 2; k <= 9; k++)
        {
            if ((ulong)x < 1UL << (7 * k - 1)) { n = k; break; }
        }
        Span<byte> ten = stackalloc byte[10];
        ten[0] = ten[1] = v < 0 ? (byte)0xFF : (byte)0x00;
        BinaryPrimitives.WriteInt64BigEndian(ten[2..], v);
        var tail = ten[(10 - n)..];
        tail[0] ^= s_signedHeader0[n];
        tail[1] ^= s_signedHeader1[n];
        foreach (var b in tail) buf.Add(b);
    }

    private static bool TryReadSignedNumIncreasing(ReadOnlySpan<byte> src, ref int pos, out long v)
    {
        v = 0;
        if (pos >= src.Length) return false;
        var b0 = src[pos];
        if (b0 is >= 0x40 and < 0xC0)
        {
            v = (sbyte)(b0 ^ 0x80);
            pos++;
            return true;
        }
        var negative = b0 < 0x40;
        var xorMask = negative ? (byte)0xFF : (byte)0x00;
        var first16 = (((b0 ^ xorMask) & 0xFF) << 8) | (pos + 1 < src.Length ? (src[pos + 1] ^ xorMask) & 0xFF : 0);
        var n = System.Numerics.BitOperations.LeadingZeroCount((uint)~first16 << 16);
        if (n < 2 || n > 10 || n > src.Length - pos) return false;
        Span<byte> bytes = stackalloc byte[10];
        for (var i = 0; i < n; i++) bytes[i] = (byte)(src[pos + i] ^ xorMask);
        bytes[0] ^= s_signedHeader0[n];
        bytes[1] ^= s_signedHeader1[n];
        ulong x = 0;
        for (var i = 0; i < n; i++)
        {
            if (x >> 56 != 0) return false;
            x = (x << 8) | bytes[i];
        }
        if (x > long.MaxValue) return false;
        pos += n;
        v = negative ? ~(long)x : (long)x;
        return true;
    }
}

using System.Buffers.Binary;

namespace CheckpointGpu.Format;

/// <summary>Where a payload lives, for error messages.</summary>
internal readonly record struct PayloadLocation(string FilePath, string Key, int ShardId, long FileOffset, long Size);

/// <summary>
/// Incremental checksum computation (and optional string collection) over a tensor payload fed in
/// arbitrary chunks, with the dtype-correct algorithm (spec section 4.6): fixed-size → CRC of the bytes;
/// DT_STRING → hashed fixed-width lengths, the stored length checksum, the bytes (4.3); DT_VARIANT →
/// per element u64 length, proto bytes and stored running checksum (4.4). Validates the structure as it goes.
/// </summary>
internal sealed class PayloadDecoder
{
    private enum Kind { Fixed, String, Variant }

    private enum Phase { Lengths, Checksum, Data, VariantLength, VariantProto, VariantChecksum, Done }

    private readonly Kind _kind;
    private readonly PayloadLocation _loc;
    private readonly long _elementCount;
    private readonly bool _bigEndian;
    private readonly bool _verify;
    private readonly bool _collect;
    private readonly int _maxElementBytes;

    private uint _crc;           // standard (finalized) CRC-32C of what has been hashed so far
    private long _consumed;      // payload bytes fed so far
    private Phase _phase;
    private long _index;         // current element
    private ulong _varint;
    private int _varintShift;
    private readonly byte[] _word = new byte[4];
    private int _wordFill;
    private long _remainingInElement;
    private long _dataTotal;
    private long[]? _lengths;
    private byte[][]? _strings;
    private int _stringFill;

    public PayloadDecoder(DType dtype, long elementCount, PayloadLocation location, bool bigEndian, bool verifyChecksums,
        bool collectStrings, int maxElementBytes, int maxElementCount)
    {
        _loc = location;
        _elementCount = elementCount;
        _bigEndian = bigEndian;
        _verify = verifyChecksums;
        _collect = collectStrings;
        _maxElementBytes = maxElementBytes;
        if (dtype == DType.String) _kind = Kind.String;
        else if (dtype == DType.Variant) _kind = Kind.Variant;
        else if (DTypes.IsFixedSize(dtype)) _kind = Kind.Fixed;
        else
            ThrowHelper.Format(CheckpointFormatError.UnsupportedDType, _loc.FilePath, $"dtype {DTypes.GetName(dtype)} cannot be read from a bundle",
                _loc.Key, _loc.ShardId, _loc.FileOffset, _loc.Size);

        if (_kind == Kind.Fixed)
        {
            _phase = Phase.Data;
            return;
        }
        if (elementCount > maxElementCount)
            ThrowHelper.Format(CheckpointFormatError.LimitExceeded, _loc.FilePath, $"{DTypes.GetName(dtype)} tensor has more elements than MaxStringElementCount",
                _loc.Key, _loc.ShardId, _loc.FileOffset, _loc.Size, $"limit {maxElementCount}, found {elementCount}");
        // Every element needs at least one length byte (+4 checksum bytes for strings, +5 per variant element).
        var minimum = _kind == Kind.String ? (elementCount > long.MaxValue - 4 ? long.MaxValue : elementCount + 4) : (elementCount > long.MaxValue / 5 ? long.MaxValue : elementCount * 5);
        if (_loc.Size < minimum)
            ThrowHelper.Format(CheckpointFormatError.SizeMismatch, _loc.FilePath, $"{DTypes.GetName(dtype)} tensor is too small for its element count",
                _loc.Key, _loc.ShardId, _loc.FileOffset, _loc.Size, $"expected at least {minimum} bytes for {elementCount} elements, found {_loc.Size}");
        if (_kind == Kind.Variant)
        {
            if (bigEndian)
                ThrowHelper.Format(CheckpointFormatError.UnsupportedEndianness, _loc.FilePath, "big-endian DT_VARIANT tensors cannot be read",
                    _loc.Key, _loc.ShardId, _loc.FileOffset, _loc.Size);
            _phase = elementCount == 0 ? Phase.Done : Phase.VariantLength;
            return;
        }
        if (_collect) _lengths = new long[elementCount];
        _phase = elementCount == 0 ? Phase.Checksum : Phase.Lengths;
    }

    /// <summary>The collected elements after <see cref="Complete"/> (string tensors fed with collection on).</summary>
    public byte[][]? Strings => _strings;

    public void Feed(ReadOnlySpan<byte> chunk)
    {
        var startConsumed = _consumed;
        _consumed += chunk.Length;
        if (_kind == Kind.Fixed)
        {
            if (_verify) _crc = MaskedCrc32C.Extend(_crc, chunk);
            return;
        }
        var i = 0;
        while (i < chunk.Length)
        {
            switch (_phase)
            {
                case Phase.Lengths:
                {
                    if (!ReadVarint(chunk, ref i, startConsumed, out var len)) break;
                    if (len > (ulong)_loc.Size)
                        Fail(CheckpointFormatError.MalformedStringTensor, $"string element {_index} is longer than the whole tensor", startConsumed + i, $"length {len}");
                    Span<byte> lenBytes = stackalloc byte[8];
                    var width = len <= uint.MaxValue ? 4 : 8;
                    if (_bigEndian) { if (width == 4) BinaryPrimitives.WriteUInt32BigEndian(lenBytes, (uint)len); else BinaryPrimitives.WriteUInt64BigEndian(lenBytes, len); }
                    else { if (width == 4) BinaryPrimitives.WriteUInt32LittleEndian(lenBytes, (uint)len); else BinaryPrimitives.WriteUInt64LittleEndian(lenBytes, len); }
                    _crc = MaskedCrc32C.Extend(_crc, lenBytes[..width]);
                    _dataTotal += (long)len;
                    if (_dataTotal > _loc.Size)
                        Fail(CheckpointFormatError.MalformedStringTensor, "string lengths add up to more than the tensor size", startConsumed + i, null);
                    if (_lengths is not null) _lengths[_index] = (long)len;
                    if (++_index == _elementCount) _phase = Phase.Checksum;
                    break;
                }
                case Phase.Checksum:
                {
                    if (!TryCompleteWord(chunk, ref i)) break;
                    var stored = _bigEndian ? BinaryPrimitives.ReadUInt32BigEndian(_word) : BinaryPrimitives.ReadUInt32LittleEndian(_word);
                    var expected = MaskedCrc32C.Mask(_crc);
                    if (_verify && stored != expected)
                        ThrowHelper.ChecksumMismatch(_loc.FilePath, "the string lengths of", _loc.Key, _loc.ShardId, _loc.FileOffset, _loc.Size, stored, expected);
                    _crc = MaskedCrc32C.Extend(_crc, _word);
                    var expectedSize = startConsumed + i + _dataTotal;
                    if (expectedSize != _loc.Size)
                        Fail(CheckpointFormatError.SizeMismatch, "string tensor size disagrees with its element lengths", null,
                            $"expected {expectedSize} bytes (lengths + checksum + data), entry says {_loc.Size}");
                    if (_collect) AllocateStrings();
                    _index = 0;
                    _remainingInElement = _elementCount > 0 ? _lengths?[0] ?? 0 : 0;
                    _phase = _dataTotal == 0 ? Phase.Done : Phase.Data;
                    if (_collect) SkipEmptyStrings();
                    break;
                }
                case Phase.Data:
                {
                    var take = chunk.Length - i;
                    if (_verify) _crc = MaskedCrc32C.Extend(_crc, chunk.Slice(i, take));
                    if (_collect) CopyStrings(chunk.Slice(i, take));
                    i += take;
                    break;
                }
                case Phase.VariantLength:
                {
                    if (!ReadVarint(chunk, ref i, startConsumed, out var len)) break;
                    var left = _loc.Size - (startConsumed + i);
                    if (len > (ulong)Math.Max(0, left - 4))
                        Fail(CheckpointFormatError.MalformedStringTensor, $"variant element {_index} runs past the end of the tensor", startConsumed + i, $"length {len}, {left} bytes left");
                    Span<byte> lenBytes = stackalloc byte[8];
                    BinaryPrimitives.WriteUInt64LittleEndian(lenBytes, len);
                    _crc = MaskedCrc32C.Extend(_crc, lenBytes);
                    _remainingInElement = (long)len;
                    _phase = len == 0 ? Phase.VariantChecksum : Phase.VariantProto;
                    break;
                }
                case Phase.VariantProto:
                {
                    var take = (int)Math.Min(_remainingInElement, chunk.Length - i);
                    _crc = MaskedCrc32C.Extend(_crc, chunk.Slice(i, take));
                    i += take;
                    _remainingInElement -= take;
                    if (_remainingInElement == 0) _phase = Phase.VariantChecksum;
                    break;
                }
                case Phase.VariantChecksum:
                {
                    if (!TryCompleteWord(chunk, ref i)) break;
                    var stored = BinaryPrimitives.ReadUInt32LittleEndian(_word);
                    var expected = MaskedCrc32C.Mask(_crc);
                    if (_verify && stored != expected)
                        ThrowHelper.ChecksumMismatch(_loc.FilePath, $"variant element {_index} of", _loc.Key, _loc.ShardId, _loc.FileOffset, _loc.Size, stored, expected);
                    _crc = MaskedCrc32C.Extend(_crc, _word);
                    _phase = ++_index == _elementCount ? Phase.Done : Phase.VariantLength;
                    break;
                }
                case Phase.Done:
                    Fail(CheckpointFormatError.SizeMismatch, "tensor payload has trailing bytes after its last element", startConsumed + i,
                        $"expected {startConsumed + i} bytes, entry says {_loc.Size}");
                    break;
            }
        }
    }

    /// <summary>Checks the payload ended where its structure says and returns the masked CRC.</summary>
    public uint Complete()
    {
        if (_consumed != _loc.Size)
            Fail(CheckpointFormatError.TruncatedData, "tensor payload ended early", _consumed, $"expected {_loc.Size} bytes, read {_consumed}");
        // A string payload in its data phase is complete once every byte arrived (its size was matched exactly).
        if (_kind != Kind.Fixed && _phase != Phase.Done && _phase != Phase.Data)
            Fail(CheckpointFormatError.MalformedStringTensor, "tensor payload ended in the middle of an element", _consumed, null);
        return MaskedCrc32C.Mask(_crc);
    }

    private bool ReadVarint(ReadOnlySpan<byte> chunk, ref int i, long startConsumed, out ulong value)
    {
        value = 0;
        while (i < chunk.Length)
        {
            var b = chunk[i++];
            if (_varintShift == 63 && b > 1)
                Fail(CheckpointFormatError.MalformedStringTensor, "element length varint overflows 64 bits", startConsumed + i, null);
            _varint |= (ulong)(b & 0x7F) << _varintShift;
            if ((b & 0x80) == 0)
            {
                value = _varint;
                _varint = 0;
                _varintShift = 0;
                return true;
            }
            _varintShift += 7;
            if (_varintShift > 63)
                Fail(CheckpointFormatError.MalformedStringTensor, "element length varint is longer than 10 bytes", startConsumed + i, null);
        }
        return false;
    }

    private void AllocateStrings()
    {
        var lengths = _lengths!;
        _strings = new byte[lengths.Length][];
        for (var k = 0; k < lengths.Length; k++)
        {
            if (lengths[k] > _maxElementBytes)
                Fail(CheckpointFormatError.LimitExceeded, $"string element {k} is larger than MaxStringElementBytes", null, $"limit {_maxElementBytes}, found {lengths[k]}");
        }
        // Sizes are now bounded by the entry size, which the caller checked against the data file.
        for (var k = 0; k < lengths.Length; k++) _strings[k] = lengths[k] == 0 ? [] : new byte[lengths[k]];
        _stringFill = 0;
    }

    private void SkipEmptyStrings()
    {
        while (_index < _elementCount && _strings![_index].Length == 0) _index++;
        _stringFill = 0;
    }

    private void CopyStrings(ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty && _index < _elementCount)
        {
            var target = _strings![_index];
            var take = Math.Min(target.Length - _stringFill, data.Length);
            data[..take].CopyTo(target.AsSpan(_stringFill));
            data = data[take..];
            _stringFill += take;
            if (_stringFill == target.Length)
            {
                _index++;
                SkipEmptyStrings();
            }
        }
    }

    private void Fail(CheckpointFormatError error, string what, long? payloadOffset, string? comparison) =>
        ThrowHelper.Format(error, _loc.FilePath, what, _loc.Key, _loc.ShardId,
            payloadOffset is null ? _loc.FileOffset : _loc.FileOffset + payloadOffset.Value, _loc.Size, comparison);

    /// <summary>Collects the 4 bytes of a stored checksum that may straddle chunks; true once all 4 are in <c>_word</c>.</summary>
    private bool TryCompleteWord(ReadOnlySpan<byte> chunk, ref int i)
    {
        var take = Math.Min(4 - _wordFill, chunk.Length - i);
        chunk.Slice(i, take).CopyTo(_word.AsSpan(_wordFill));
        _wordFill += take;
        i += take;
        if (_wordFill < 4) return false;
        _wordFill = 0;
        return true;
    }
}

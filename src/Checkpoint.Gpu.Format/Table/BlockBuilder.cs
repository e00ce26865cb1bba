using System.Buffers.Binary;

namespace CheckpointGpu.Format.Table;

/// <summary>
/// Builds one table block: prefix-compressed entries, then the restart array and its count
/// (<c>tsl/lib/io/block_builder.cc</c>; spec section 2.2).
/// </summary>
internal sealed class BlockBuilder
{
    private readonly int _restartInterval;
    private readonly List<byte> _buffer = new();
    private readonly List<uint> _restarts = new() { 0 };
    private byte[] _lastKey = [];
    private int _counter;

    public BlockBuilder(int restartInterval) => _restartInterval = restartInterval;

    public bool IsEmpty => _buffer.Count == 0;

    /// <summary>Block size once finished: entries + 4 bytes per restart + 4-byte count.</summary>
    public long CurrentSizeEstimate => _buffer.Count + (_restarts.Count * 4L) + 4;

    public void Add(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        var shared = 0;
        if (_counter < _restartInterval)
        {
            var min = Math.Min(_lastKey.Length, key.Length);
            while (shared < min && _lastKey[shared] == key[shared]) shared++;
        }
        else
        {
            _restarts.Add(checked((uint)_buffer.Count));
            _counter = 0;
        }
        var nonShared = key.Length - shared;
        Varint.Write32(_buffer, (uint)shared);
        Varint.Write32(_buffer, (uint)nonShared);
        Varint.Write32(_buffer, checked((uint)value.Length));
        foreach (var b in key[shared..]) _buffer.Add(b);
        _buffer.AddRange(value);
        _lastKey = key.ToArray();
        _counter++;
    }

    /// <summary>Returns the finished block contents and resets the builder.</summary>
    public byte[] FinishAndReset()
    {
        var result = new byte[_buffer.Count + (_restarts.Count * 4) + 4];
        _buffer.CopyTo(result);
        var p = _buffer.Count;
        foreach (var r in _restarts)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(result.AsSpan(p), r);
            p += 4;
        }
        BinaryPrimitives.WriteUInt32LittleEndian(result.AsSpan(p), (uint)_restarts.Count);
        _buffer.Clear();
        _restarts.Clear();
        _restarts.Add(0);
        _lastKey = [];
        _counter = 0;
        return result;
    }
}

namespace CheckpointGpu.Format;

/// <summary>
/// A write-only, append-only, buffered <see cref="Stream"/> over an <see cref="IShardFile"/> (positional synchronous
/// writes), so sequential writers (<see cref="TensorBundleWriter"/>) go through the storage seam. Disposing flushes
/// nothing and closes the file.
/// </summary>
internal sealed class ShardFileWriteStream : Stream
{
    private readonly byte[] _buffer;
    private int _buffered;
    private long _flushed;

    public ShardFileWriteStream(IShardFile file, int bufferSizeInBytes)
    {
        File = file;
        _buffer = new byte[bufferSizeInBytes];
    }

    public IShardFile File { get; }

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => _flushed + _buffered;

    public override long Position
    {
        get => _flushed + _buffered;
        set => throw new NotSupportedException();
    }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (_buffered + buffer.Length <= _buffer.Length)
        {
            buffer.CopyTo(_buffer.AsSpan(_buffered));
            _buffered += buffer.Length;
            return;
        }
        Flush();
        if (buffer.Length >= _buffer.Length)
        {
            File.Write(buffer, _flushed);
            _flushed += buffer.Length;
            return;
        }
        buffer.CopyTo(_buffer);
        _buffered = buffer.Length;
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void WriteByte(byte value) => Write([value]);

    public override void Flush()
    {
        if (_buffered == 0) return;
        File.Write(_buffer.AsSpan(0, _buffered), _flushed);
        _flushed += _buffered;
        _buffered = 0;
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing) File.Dispose();
        base.Dispose(disposing);
    }
}

using CheckpointGpu.Pipeline;

namespace CheckpointGpu.Distributed.Tests;

/// <summary>Local storage that counts the bytes read through it (what a restore actually pulled off the disk).</summary>
public sealed class CountingShardStorage : IShardStorage
{
    private long _bytesRead;

    public long BytesRead => Interlocked.Read(ref _bytesRead);

    public IShardFile CreateForWrite(string path, bool preferDirectIO) => LocalShardStorage.Instance.CreateForWrite(path, preferDirectIO);

    public IShardFile OpenForRead(string path, bool preferDirectIO) => new CountingFile(this, LocalShardStorage.Instance.OpenForRead(path, preferDirectIO));

    public void Move(string sourcePath, string destinationPath) => LocalShardStorage.Instance.Move(sourcePath, destinationPath);

    public void Delete(string path) => LocalShardStorage.Instance.Delete(path);

    public bool Exists(string path) => LocalShardStorage.Instance.Exists(path);

    public void FlushDirectory(string directory) => LocalShardStorage.Instance.FlushDirectory(directory);

    private sealed class CountingFile(CountingShardStorage owner, IShardFile inner) : IShardFile
    {
        public string Path => inner.Path;

        public bool IsDirect => inner.IsDirect;

        public long Length => inner.Length;

        public ValueTask WriteAsync(ReadOnlyMemory<byte> data, long fileOffset, CancellationToken cancellationToken) => inner.WriteAsync(data, fileOffset, cancellationToken);

        public async ValueTask<int> ReadAsync(Memory<byte> buffer, long fileOffset, CancellationToken cancellationToken)
        {
            var n = await inner.ReadAsync(buffer, fileOffset, cancellationToken).ConfigureAwait(false);
            Interlocked.Add(ref owner._bytesRead, n);
            return n;
        }

        public void SetLength(long lengthInBytes) => inner.SetLength(lengthInBytes);

        public void FlushToDisk() => inner.FlushToDisk();

        public void Dispose() => inner.Dispose();
    }
}

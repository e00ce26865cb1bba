using CheckpointGpu.Pipeline;

namespace CheckpointGpu.Distributed.Worker;

/// <summary>
/// Local storage whose writes to matching files hang (after printing <c>SAVING</c>, so a test can kill the process
/// mid-write) or fail with an <see cref="IOException"/>: faults inside the IO pipeline's part write.
/// </summary>
public sealed class FaultStorage(Func<string, bool>? hang, Func<string, bool>? fail) : IShardStorage
{
    private readonly IShardStorage _inner = LocalShardStorage.Instance;
    private int _announced;

    public IShardFile CreateForWrite(string path, bool preferDirectIO)
    {
        var file = _inner.CreateForWrite(path, preferDirectIO);
        return hang?.Invoke(path) == true || fail?.Invoke(path) == true ? new FaultyFile(this, file, hang?.Invoke(path) == true) : file;
    }

    public IShardFile OpenForRead(string path, bool preferDirectIO) => _inner.OpenForRead(path, preferDirectIO);

    public void Move(string sourcePath, string destinationPath) => _inner.Move(sourcePath, destinationPath);

    public void Delete(string path) => _inner.Delete(path);

    public bool Exists(string path) => _inner.Exists(path);

    public void FlushDirectory(string directory) => _inner.FlushDirectory(directory);

    private sealed class FaultyFile(FaultStorage owner, IShardFile inner, bool hang) : IShardFile
    {
        public string Path => inner.Path;

        public bool IsDirect => inner.IsDirect;

        public long Length => inner.Length;

        public async ValueTask WriteAsync(ReadOnlyMemory<byte> data, long fileOffset, CancellationToken cancellationToken)
        {
            if (!hang) throw new IOException($"{System.IO.Path.GetFileName(Path)}: injected write failure at offset {fileOffset}.");
            if (Interlocked.Exchange(ref owner._announced, 1) == 0)
            {
                Console.WriteLine("SAVING");
                Console.Out.Flush();
            }
            await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
        }

        public ValueTask<int> ReadAsync(Memory<byte> buffer, long fileOffset, CancellationToken cancellationToken) =>
            inner.ReadAsync(buffer, fileOffset, cancellationToken);

        public void SetLength(long lengthInBytes) => inner.SetLength(lengthInBytes);

        public void FlushToDisk() => inner.FlushToDisk();

        public void Dispose() => inner.Dispose();
    }
}

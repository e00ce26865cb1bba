using CheckpointGpu.Format;

namespace CheckpointGpu.TestSupport;

/// <summary>
/// A decorator over another <see cref="IShardStorage"/> that injects failures (FASTER's
/// <c>SimulatedFlakyDevice</c>, STYLE B6): fail the Nth write, write short, run out of space after a byte
/// budget, delay writes, fail or hang the writes of chosen files, or fail a flush or a rename; it also counts the bytes
/// read. Test code (moved out of the library): every writer's files go through the storage seam, so one decorator
/// reaches every step of the commit protocol (<see cref="BundleCommit"/>) on every save path.
/// </summary>
/// <remarks>Thread-safe: counters are updated atomically. Settings may be changed between saves.</remarks>
public sealed class FaultInjectingShardStorage : IShardStorage
{
    private readonly IShardStorage _inner;
    private long _writeCount;
    private long _bytesWritten;
    private long _bytesRead;

    /// <summary>Wraps <paramref name="inner"/>.</summary>
    /// <param name="inner">The real storage, usually <see cref="LocalShardStorage.Instance"/>.</param>
    /// <exception cref="ArgumentNullException"><paramref name="inner"/> is null.</exception>
    public FaultInjectingShardStorage(IShardStorage inner)
    {
        ArgumentNullException.ThrowIfNull(inner);
        _inner = inner;
    }

    /// <summary>1-based number of the data write that throws an <see cref="IOException"/> without writing; 0 disables. Counted across all files.</summary>
    public long FailWriteNumber { get; set; }

    /// <summary>1-based number of the write that writes only the first half of its bytes and then throws (a short write); 0 disables.</summary>
    public long ShortWriteNumber { get; set; }

    /// <summary>Total bytes accepted before writes fail with "No space left on device" (ENOSPC); negative disables. Default -1.</summary>
    public long DiskCapacityInBytes { get; set; } = -1;

    /// <summary>Delay added before every write. Default zero.</summary>
    public TimeSpan WriteDelay { get; set; }

    /// <summary>Every write to a file whose path matches throws an <see cref="IOException"/> without writing; null disables.</summary>
    public Func<string, bool>? FailWriteWhen { get; set; }

    /// <summary>
    /// Every write to a file whose path matches never finishes until its cancellation token fires (a hung device, or a
    /// process to kill mid-write); null disables. <see cref="WriteBlocked"/> is called with the path as each write blocks.
    /// </summary>
    public Func<string, bool>? BlockWriteWhen { get; set; }

    /// <summary>Called (on the writing thread) with the file's path when a write starts blocking under <see cref="BlockWriteWhen"/>.</summary>
    public Action<string>? WriteBlocked { get; set; }

    /// <summary>Fails <see cref="IShardFile.FlushToDisk"/> of files whose name matches; null disables.</summary>
    public Func<string, bool>? FailFlushWhen { get; set; }

    /// <summary>Fails <see cref="Move"/> when the destination path matches (e.g. the <c>.index</c>: "crash after data, before the commit point"); null disables.</summary>
    public Func<string, bool>? FailMoveWhen { get; set; }

    /// <summary>Fails <see cref="IShardStorage.CreateForWrite"/> of paths that match; null disables.</summary>
    public Func<string, bool>? FailCreateWhen { get; set; }

    /// <summary>Fails <see cref="Delete"/> of paths that match (e.g. removing a stale index, or pruning); null disables.</summary>
    public Func<string, bool>? FailDeleteWhen { get; set; }

    /// <summary>Fails <see cref="FlushDirectory"/> of directories that match; null disables.</summary>
    public Func<string, bool>? FailFlushDirectoryWhen { get; set; }

    /// <summary>Every storage operation, in order: <c>create</c>, <c>write</c>, <c>flush</c>, <c>move</c>, <c>delete</c>, <c>flushdir</c>, with its path.</summary>
    public System.Collections.Concurrent.ConcurrentQueue<(string Operation, string Path)> Operations { get; } = new();

    /// <summary>Writes seen so far (all files).</summary>
    public long WriteCount => Interlocked.Read(ref _writeCount);

    /// <summary>Bytes returned by reads so far (all files): what a restore actually pulled off the disk.</summary>
    public long BytesRead => Interlocked.Read(ref _bytesRead);

    /// <summary>Paths created through this storage (for leak checks in tests).</summary>
    public System.Collections.Concurrent.ConcurrentQueue<string> CreatedPaths { get; } = new();

    /// <summary>Resets the write and byte counters.</summary>
    public void ResetCounters()
    {
        Interlocked.Exchange(ref _writeCount, 0);
        Interlocked.Exchange(ref _bytesWritten, 0);
        Interlocked.Exchange(ref _bytesRead, 0);
    }

    /// <inheritdoc/>
    public IShardFile CreateForWrite(string path, bool preferDirectIO)
    {
        Operations.Enqueue(("create", path));
        if (FailCreateWhen?.Invoke(path) == true) throw new IOException($"{Path.GetFileName(path)}: injected create failure.");
        var file = _inner.CreateForWrite(path, preferDirectIO);
        CreatedPaths.Enqueue(path);
        return new FaultyFile(this, file);
    }

    /// <inheritdoc/>
    public IShardFile OpenForRead(string path, bool preferDirectIO) => new FaultyFile(this, _inner.OpenForRead(path, preferDirectIO));

    /// <inheritdoc/>
    public void Move(string sourcePath, string destinationPath)
    {
        Operations.Enqueue(("move", destinationPath));
        if (FailMoveWhen?.Invoke(destinationPath) == true)
            throw new IOException($"{Path.GetFileName(destinationPath)}: injected rename failure.");
        _inner.Move(sourcePath, destinationPath);
    }

    /// <inheritdoc/>
    public void Delete(string path)
    {
        Operations.Enqueue(("delete", path));
        if (FailDeleteWhen?.Invoke(path) == true) throw new IOException($"{Path.GetFileName(path)}: injected delete failure.");
        _inner.Delete(path);
    }

    /// <inheritdoc/>
    public bool Exists(string path) => _inner.Exists(path);

    /// <inheritdoc/>
    public void FlushDirectory(string directory)
    {
        Operations.Enqueue(("flushdir", directory));
        if (FailFlushDirectoryWhen?.Invoke(directory) == true) throw new IOException($"{directory}: injected directory flush failure.");
        _inner.FlushDirectory(directory);
    }

    private sealed class FaultyFile(FaultInjectingShardStorage owner, IShardFile inner) : IShardFile
    {
        public string Path => inner.Path;

        public bool IsDirect => inner.IsDirect;

        public long Length => inner.Length;

        public async ValueTask WriteAsync(ReadOnlyMemory<byte> data, long fileOffset, CancellationToken cancellationToken)
        {
            var n = Interlocked.Increment(ref owner._writeCount);
            owner.Operations.Enqueue(("write", Path));
            if (owner.WriteDelay > TimeSpan.Zero) await Task.Delay(owner.WriteDelay, cancellationToken).ConfigureAwait(false);
            if (owner.FailWriteWhen?.Invoke(Path) == true)
                throw new IOException($"{System.IO.Path.GetFileName(Path)}: injected write failure at offset {fileOffset} (FailWriteWhen).");
            if (owner.BlockWriteWhen?.Invoke(Path) == true)
            {
                owner.WriteBlocked?.Invoke(Path);
                await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
            }
            if (n == owner.FailWriteNumber)
                throw new IOException($"{System.IO.Path.GetFileName(Path)}: injected write failure (write #{n}, offset {fileOffset}, length {data.Length} bytes).");
            if (n == owner.ShortWriteNumber)
            {
                var half = data.Length / 2;
                if (IsDirect) half &= ~(IShardFile.DirectIOAlignmentInBytes - 1);
                if (half > 0) await inner.WriteAsync(data[..half], fileOffset, cancellationToken).ConfigureAwait(false);
                throw new IOException($"{System.IO.Path.GetFileName(Path)}: injected short write (wrote {half} of {data.Length} bytes at offset {fileOffset}).");
            }
            var total = Interlocked.Add(ref owner._bytesWritten, data.Length);
            if (owner.DiskCapacityInBytes >= 0 && total > owner.DiskCapacityInBytes)
                throw new IOException($"{System.IO.Path.GetFileName(Path)}: No space left on device (injected ENOSPC at offset {fileOffset}).", 28);
            await inner.WriteAsync(data, fileOffset, cancellationToken).ConfigureAwait(false);
        }

        public void Write(ReadOnlySpan<byte> data, long fileOffset)
        {
            var n = Interlocked.Increment(ref owner._writeCount);
            owner.Operations.Enqueue(("write", Path));
            if (owner.WriteDelay > TimeSpan.Zero) Thread.Sleep(owner.WriteDelay);
            if (owner.FailWriteWhen?.Invoke(Path) == true)
                throw new IOException($"{System.IO.Path.GetFileName(Path)}: injected write failure at offset {fileOffset} (FailWriteWhen).");
            if (n == owner.FailWriteNumber)
                throw new IOException($"{System.IO.Path.GetFileName(Path)}: injected write failure (write #{n}, offset {fileOffset}, length {data.Length} bytes).");
            if (n == owner.ShortWriteNumber)
            {
                var half = data.Length / 2;
                if (half > 0) inner.Write(data[..half], fileOffset);
                throw new IOException($"{System.IO.Path.GetFileName(Path)}: injected short write (wrote {half} of {data.Length} bytes at offset {fileOffset}).");
            }
            var total = Interlocked.Add(ref owner._bytesWritten, data.Length);
            if (owner.DiskCapacityInBytes >= 0 && total > owner.DiskCapacityInBytes)
                throw new IOException($"{System.IO.Path.GetFileName(Path)}: No space left on device (injected ENOSPC at offset {fileOffset}).", 28);
            inner.Write(data, fileOffset);
        }

        public async ValueTask<int> ReadAsync(Memory<byte> buffer, long fileOffset, CancellationToken cancellationToken)
        {
            var n = await inner.ReadAsync(buffer, fileOffset, cancellationToken).ConfigureAwait(false);
            Interlocked.Add(ref owner._bytesRead, n);
            return n;
        }

        public void SetLength(long lengthInBytes) => inner.SetLength(lengthInBytes);

        public void FlushToDisk()
        {
            owner.Operations.Enqueue(("flush", Path));
            if (owner.FailFlushWhen?.Invoke(Path) == true)
                throw new IOException($"{System.IO.Path.GetFileName(Path)}: injected flush failure.");
            inner.FlushToDisk();
        }

        public void Dispose() => inner.Dispose();
    }
}

using Microsoft.Win32.SafeHandles;

namespace CheckpointGpu.Format;

/// <summary>
/// <see cref="IShardStorage"/> on the local file system: <see cref="RandomAccess"/> positional IO on
/// <see cref="SafeFileHandle"/>s (the asynchronous forms run the blocking calls on <see cref="BlockingIOThreads.Shared"/>), <c>O_DIRECT</c> through <c>open(2)</c> on Linux with a clean fallback to
/// buffered IO when the file system answers EINVAL (tmpfs, some FUSE and network file systems).
/// </summary>
/// <remarks>Stateless and thread-safe; use <see cref="Instance"/>.</remarks>
public sealed class LocalShardStorage : IShardStorage
{
    private int _directUnsupported;

    /// <summary>The shared instance.</summary>
    public static LocalShardStorage Instance { get; } = new();

    /// <inheritdoc/>
    public IShardFile CreateForWrite(string path, bool preferDirectIO)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (preferDirectIO && PosixFiles.IsLinux && Volatile.Read(ref _directUnsupported) == 0)
        {
            var handle = PosixFiles.TryCreateDirect(path, out var errno);
            if (handle is not null) return new LocalShardFile(path, handle, isDirect: true);
            if (errno != PosixFiles.EINVAL)
                throw new IOException($"{path}: cannot create the file with O_DIRECT (errno {errno}).");
            // EINVAL: this file system refuses O_DIRECT. open(O_CREAT) may have created the file before failing.
            Volatile.Write(ref _directUnsupported, 1);
            TryDeleteQuietly(path);
        }
        var h = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, FileOptions.Asynchronous);
        return new LocalShardFile(path, h, isDirect: false);
    }

    /// <inheritdoc/>
    public IShardFile OpenForRead(string path, bool preferDirectIO)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"{System.IO.Path.GetFileName(path)}: data file not found [{path}].", path);
        if (preferDirectIO && PosixFiles.IsLinux && Volatile.Read(ref _directUnsupported) == 0)
        {
            var handle = PosixFiles.TryOpenDirectRead(path, out var errno);
            if (handle is not null) return new LocalShardFile(path, handle, isDirect: true);
            if (errno != PosixFiles.EINVAL) throw new IOException($"{path}: cannot open the file with O_DIRECT (errno {errno}).");
            Volatile.Write(ref _directUnsupported, 1);
        }
        var h = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, FileOptions.Asynchronous);
        return new LocalShardFile(path, h, isDirect: false);
    }

    /// <inheritdoc/>
    public void Move(string sourcePath, string destinationPath) => File.Move(sourcePath, destinationPath, overwrite: true);

    /// <inheritdoc/>
    public void Delete(string path) => File.Delete(path);

    /// <inheritdoc/>
    public bool Exists(string path) => File.Exists(path);

    /// <inheritdoc/>
    public void FlushDirectory(string directory) => PosixFiles.FSyncDirectory(directory);

    private static void TryDeleteQuietly(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    private sealed class LocalShardFile(string path, SafeFileHandle handle, bool isDirect) : IShardFile
    {
        public string Path { get; } = path;

        public bool IsDirect { get; } = isDirect;

        public long Length => RandomAccess.GetLength(handle);

        // Blocking pwrite/pread on the dedicated IO threads, not on thread-pool workers (see BlockingIOThreads).
        public ValueTask WriteAsync(ReadOnlyMemory<byte> data, long fileOffset, CancellationToken cancellationToken) =>
            new(BlockingIOThreads.Shared.Run(() => Write(data.Span, fileOffset), cancellationToken));

        public void Write(ReadOnlySpan<byte> data, long fileOffset)
        {
            try
            {
                RandomAccess.Write(handle, data, fileOffset);
            }
            catch (IOException ex)
            {
                // Name the file and offset (the runtime's message for ENOSPC/EIO names neither); keep the errno in HResult.
                throw new IOException($"{Path}: writing {data.Length} bytes at offset {fileOffset} failed: {ex.Message}", ex) { HResult = ex.HResult };
            }
        }

        public ValueTask<int> ReadAsync(Memory<byte> buffer, long fileOffset, CancellationToken cancellationToken) =>
            new(BlockingIOThreads.Shared.Run(() => RandomAccess.Read(handle, buffer.Span, fileOffset), cancellationToken));

        public void SetLength(long lengthInBytes) => RandomAccess.SetLength(handle, lengthInBytes);

        public void FlushToDisk()
        {
            try
            {
                RandomAccess.FlushToDisk(handle);
            }
            catch (IOException ex)
            {
                throw new IOException($"{Path}: fsync failed: {ex.Message}", ex) { HResult = ex.HResult };
            }
        }

        public void Dispose() => handle.Dispose();
    }
}

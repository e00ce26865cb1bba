namespace CheckpointGpu.Format;

/// <summary>
/// The narrow storage seam (FASTER's <c>IDevice</c>, STYLE A1.1): create/open checkpoint files, rename, delete and
/// flush a directory. Everything any writer does to a checkpoint's files goes through it — the one commit protocol
/// (<see cref="BundleCommit"/>), the state file (<see cref="CheckpointStateFile.Write(string, CheckpointState, IShardStorage?)"/>),
/// pruning (<see cref="BundleCommit.DeleteCheckpoint"/>) and the IO pipeline's positional readers and writers — so faults can
/// be injected (the tests' fault-injecting decorator) and other backends plugged in.
/// </summary>
/// <remarks>
/// <para>Contract used by the commit protocol (see <see cref="BundleCommit"/>): <see cref="Move"/> is an
/// atomic rename that replaces an existing destination; <see cref="FlushDirectory"/> makes earlier creations and
/// renames in that directory durable.</para>
/// <para>Implementations must be thread-safe: several shard files are written concurrently.</para>
/// </remarks>
public interface IShardStorage
{
    /// <summary>Creates a new file for writing; fails if it exists.</summary>
    /// <param name="path">Full path of the file.</param>
    /// <param name="preferDirectIO">Open with <c>O_DIRECT</c> when the file system allows it; fall back to buffered IO otherwise.</param>
    /// <returns>The open file; the caller disposes it.</returns>
    /// <exception cref="IOException">The file exists or cannot be created.</exception>
    IShardFile CreateForWrite(string path, bool preferDirectIO);

    /// <summary>Opens an existing file for reading.</summary>
    /// <param name="path">Full path of the file.</param>
    /// <param name="preferDirectIO">Open with <c>O_DIRECT</c> when possible (then offsets, lengths and buffers must be 4096-aligned).</param>
    /// <returns>The open file; the caller disposes it.</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="IOException">The file cannot be opened.</exception>
    IShardFile OpenForRead(string path, bool preferDirectIO);

    /// <summary>Atomically renames <paramref name="sourcePath"/> to <paramref name="destinationPath"/>, replacing it if it exists.</summary>
    /// <param name="sourcePath">Existing file.</param>
    /// <param name="destinationPath">New name, in the same directory.</param>
    /// <exception cref="IOException">The rename failed.</exception>
    void Move(string sourcePath, string destinationPath);

    /// <summary>Deletes a file; does nothing when it does not exist.</summary>
    /// <param name="path">Full path.</param>
    /// <exception cref="IOException">The delete failed.</exception>
    void Delete(string path);

    /// <summary>True when <paramref name="path"/> exists.</summary>
    /// <param name="path">Full path.</param>
    bool Exists(string path);

    /// <summary>Makes creations, renames and deletions in <paramref name="directory"/> durable (<c>fsync</c> of the directory).</summary>
    /// <param name="directory">The directory.</param>
    /// <exception cref="IOException">The flush failed.</exception>
    void FlushDirectory(string directory);
}

/// <summary>One open shard file: positional reads and writes, truncate, flush (STYLE B5: no shared position).</summary>
/// <remarks>
/// When <see cref="IsDirect"/> is true, buffers must be 4096-byte aligned and offsets and lengths multiples of
/// 4096 (<see cref="DirectIOAlignmentInBytes"/>). Reads and writes at different offsets may run concurrently.
/// </remarks>
public interface IShardFile : IDisposable
{
    /// <summary>Alignment required by <c>O_DIRECT</c> for buffers, offsets and lengths, in bytes.</summary>
    const int DirectIOAlignmentInBytes = 4096;

    /// <summary>The file's path.</summary>
    string Path { get; }

    /// <summary>True when the file was opened with <c>O_DIRECT</c>.</summary>
    bool IsDirect { get; }

    /// <summary>Current length in bytes.</summary>
    /// <exception cref="IOException">The length cannot be read.</exception>
    long Length { get; }

    /// <summary>Writes all of <paramref name="data"/> at <paramref name="fileOffset"/>.</summary>
    /// <param name="data">The bytes; with <see cref="IsDirect"/>, aligned as described on the type.</param>
    /// <param name="fileOffset">Byte offset in the file.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>Completes when the write returned (not durable until <see cref="FlushToDisk"/>).</returns>
    /// <exception cref="IOException">The write failed (e.g. ENOSPC) or was short.</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    ValueTask WriteAsync(ReadOnlyMemory<byte> data, long fileOffset, CancellationToken cancellationToken);

    /// <summary>Writes all of <paramref name="data"/> at <paramref name="fileOffset"/>, blocking the calling thread (the
    /// synchronous stage writers use it: <see cref="TensorBundleWriter"/>, index and state-file writes).</summary>
    /// <param name="data">The bytes; with <see cref="IsDirect"/>, aligned as described on the type.</param>
    /// <param name="fileOffset">Byte offset in the file.</param>
    /// <exception cref="IOException">The write failed (e.g. ENOSPC) or was short.</exception>
    void Write(ReadOnlySpan<byte> data, long fileOffset);

    /// <summary>Reads up to <c>buffer.Length</c> bytes at <paramref name="fileOffset"/>.</summary>
    /// <param name="buffer">Destination; with <see cref="IsDirect"/>, aligned as described on the type.</param>
    /// <param name="fileOffset">Byte offset in the file.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The number of bytes read; fewer than requested only at the end of the file.</returns>
    /// <exception cref="IOException">The read failed.</exception>
    ValueTask<int> ReadAsync(Memory<byte> buffer, long fileOffset, CancellationToken cancellationToken);

    /// <summary>Sets the file length (truncates the padding of an <c>O_DIRECT</c> tail).</summary>
    /// <param name="lengthInBytes">New length in bytes.</param>
    /// <exception cref="IOException">The truncate failed.</exception>
    void SetLength(long lengthInBytes);

    /// <summary>Flushes the file's data and metadata to stable storage (<c>fsync</c>). Blocks the calling thread.</summary>
    /// <exception cref="IOException">The flush failed.</exception>
    void FlushToDisk();
}

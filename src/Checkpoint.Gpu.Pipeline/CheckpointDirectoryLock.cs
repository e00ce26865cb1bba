using System.Globalization;
using System.Text;
using CheckpointGpu.Pipeline.Interop;

namespace CheckpointGpu.Pipeline;

/// <summary>
/// One saver per checkpoint directory: an advisory, exclusive lock on <c>&lt;directory&gt;/checkpoint.lock</c>, held by
/// the saving process until released (or until the process dies — the operating system drops the lock with the
/// process, so a lock left by a killed saver never blocks the next one).
/// </summary>
/// <remarks>
/// <para><b>Mechanism.</b> The lock file is opened with <see cref="FileShare.None"/>, which .NET implements on Unix as
/// <c>flock(LOCK_EX | LOCK_NB)</c> on the open file description; the holder writes its process id into the file. A
/// second process gets a <see cref="CheckpointDirectoryLockedException"/> (an <see cref="IOException"/>) naming the
/// holder's pid, read from the file without taking a lock. Advisory: only savers that ask for the lock are excluded
/// (TensorFlow's own savers do not); setting <c>DOTNET_SYSTEM_IO_DISABLEFILELOCKING</c> disables it. On network file
/// systems <c>flock</c> may be local to one machine.</para>
/// <para><b>Within one process</b> acquisitions of the same directory share one lock (reference-counted): the lock
/// excludes other processes, not other objects of this process. The file itself is left in place after release
/// (deleting it would race with a new holder's open).</para>
/// <para><b>Multi-worker saves</b>: the chief (rank 0), which alone publishes the merged checkpoint, writes the state
/// file and prunes, holds the lock; the other workers only write their parts into <c>&lt;prefix&gt;_temp/</c> and do not
/// take it.</para>
/// <para>Thread-safe.</para>
/// </remarks>
public sealed class CheckpointDirectoryLock : IDisposable
{
    /// <summary>The lock file's name, <c>checkpoint.lock</c>.</summary>
    public const string FileName = "checkpoint.lock";

    private static readonly Dictionary<string, Holder> s_held = new(StringComparer.Ordinal);
    private static readonly Lock s_sync = new();

    private Holder? _holder;

    private CheckpointDirectoryLock(Holder holder, string directory)
    {
        _holder = holder;
        Directory = directory;
    }

    /// <summary>The locked directory (full path).</summary>
    public string Directory { get; }

    /// <summary>The lock file's full path.</summary>
    public string LockFilePath => Path.Combine(Directory, FileName);

    /// <summary>
    /// Takes the lock of <paramref name="directory"/> (created if missing) without waiting.
    /// </summary>
    /// <param name="directory">The checkpoint directory.</param>
    /// <returns>The lock; dispose it to release (the last release in this process unlocks).</returns>
    /// <exception cref="ArgumentException"><paramref name="directory"/> is empty.</exception>
    /// <exception cref="CheckpointDirectoryLockedException">Another process holds the lock.</exception>
    /// <exception cref="IOException">The directory or the lock file cannot be created or opened (e.g. a read-only file system).</exception>
    /// <exception cref="UnauthorizedAccessException">No permission to create or open the lock file.</exception>
    public static CheckpointDirectoryLock Acquire(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));
        lock (s_sync)
        {
            if (!s_held.TryGetValue(full, out var holder))
            {
                holder = new Holder(Open(full));
                s_held[full] = holder;
            }
            holder.Count++;
            return new CheckpointDirectoryLock(holder, full);
        }
    }

    /// <summary>The process id written into <paramref name="directory"/>'s lock file, or null when there is none (or it cannot be read).</summary>
    /// <param name="directory">The checkpoint directory.</param>
    /// <returns>The pid of the last holder; it may have exited (the lock itself is what counts).</returns>
    public static int? ReadHolderProcessId(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var bytes = LibC.TryReadWithoutLock(Path.Combine(directory, FileName), 64);
        if (bytes is null) return null;
        var text = Encoding.ASCII.GetString(bytes).Trim();
        var end = text.IndexOf('\n', StringComparison.Ordinal);
        if (end >= 0) text = text[..end];
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) ? pid : null;
    }

    /// <summary>Releases this acquisition; the last one in the process closes the lock file (unlocking it).</summary>
    public void Dispose()
    {
        lock (s_sync)
        {
            if (_holder is not { } holder) return;
            _holder = null;
            if (--holder.Count > 0) return;
            s_held.Remove(Directory);
            holder.Stream.Dispose();
        }
    }

    private static FileStream Open(string directory)
    {
        System.IO.Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, FileName);
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, bufferSize: 0);
        }
        catch (IOException ex) when (IsSharingViolation(ex))
        {
            var pid = ReadHolderProcessId(directory);
            throw new CheckpointDirectoryLockedException(directory, pid, ex);
        }
        try
        {
            stream.SetLength(0);
            stream.Write(Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n"));
            stream.Flush();
            return stream;
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    // On Unix .NET reports a refused flock(LOCK_NB) as an IOException whose HResult is the raw errno EWOULDBLOCK (= EAGAIN:
    // 11 on Linux, 35 on macOS); on Windows it is ERROR_SHARING_VIOLATION (0x80070020).
    private static bool IsSharingViolation(IOException ex) =>
        ex.HResult is 11 or 35 or unchecked((int)0x80070020) && ex is not FileNotFoundException and not DirectoryNotFoundException;

    private sealed class Holder(FileStream stream)
    {
        public FileStream Stream { get; } = stream;

        public int Count { get; set; }
    }
}

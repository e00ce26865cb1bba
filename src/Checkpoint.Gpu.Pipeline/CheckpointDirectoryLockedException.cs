using System.Globalization;

namespace CheckpointGpu.Pipeline;

/// <summary>Another process holds a checkpoint directory's <see cref="CheckpointDirectoryLock"/>.</summary>
public sealed class CheckpointDirectoryLockedException : IOException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="directory">The locked directory.</param>
    /// <param name="holderProcessId">The holder's pid, when known.</param>
    /// <param name="innerException">The sharing violation.</param>
    public CheckpointDirectoryLockedException(string directory, int? holderProcessId, Exception? innerException = null)
        : base($"{directory}: another process (pid {(holderProcessId is { } p ? p.ToString(CultureInfo.InvariantCulture) : "unknown")}) is saving checkpoints into this directory "
            + $"and holds its lock file '{CheckpointDirectoryLock.FileName}'; only one saver per directory is allowed. Stop that process or save elsewhere.", innerException)
    {
        Directory = directory;
        HolderProcessId = holderProcessId;
    }

    /// <summary>The locked directory.</summary>
    public string Directory { get; }

    /// <summary>The pid written by the holder, or null when it could not be read.</summary>
    public int? HolderProcessId { get; }
}

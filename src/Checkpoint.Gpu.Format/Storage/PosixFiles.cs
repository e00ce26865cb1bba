using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace CheckpointGpu.Format;

/// <summary>
/// The few POSIX calls .NET does not expose, for <see cref="LocalShardStorage"/>: <c>open(2)</c> with <c>O_DIRECT</c>
/// (there is no <see cref="FileOptions"/> for it) and <c>fsync(2)</c> of a directory (makes renames, creations and
/// deletions in it durable). Linux only; elsewhere callers fall back to buffered IO and the directory flush is a no-op
/// (Windows/macOS commit metadata differently).
/// </summary>
internal static partial class PosixFiles
{
    private const int ORdOnly = 0x0;
    private const int OWrOnly = 0x1;
    private const int OCreat = 0x40;
    private const int OExcl = 0x80;
    private const int OCloexec = 0x80000;

    internal const int EINVAL = 22;

    // O_DIRECT and O_DIRECTORY differ between architectures (asm-generic vs x86/arm).
    private static int ODirect => RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm ? 0x10000 : 0x4000;
    private static int ODirectory => RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm ? 0x4000 : 0x10000;

    internal static bool IsLinux => OperatingSystem.IsLinux();

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int FSync(SafeFileHandle fd);

    /// <summary>Creates a new file (<c>O_CREAT|O_EXCL</c>) for writing with <c>O_DIRECT</c>.</summary>
    /// <returns>The handle, or <see langword="null"/> with <paramref name="errno"/> set (EINVAL: the filesystem refuses O_DIRECT).</returns>
    internal static SafeFileHandle? TryCreateDirect(string path, out int errno)
    {
        var fd = Open(path, OWrOnly | OCreat | OExcl | OCloexec | ODirect, Convert.ToInt32("644", 8));
        errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        return fd < 0 ? null : new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>Opens an existing file for reading with <c>O_DIRECT</c>.</summary>
    /// <returns>The handle, or <see langword="null"/> with <paramref name="errno"/> set.</returns>
    internal static SafeFileHandle? TryOpenDirectRead(string path, out int errno)
    {
        var fd = Open(path, ORdOnly | OCloexec | ODirect, 0);
        errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        return fd < 0 ? null : new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>Flushes a directory's entries (renames, creations, deletions) to stable storage: <c>open(O_DIRECTORY)</c> + <c>fsync</c>.</summary>
    /// <exception cref="IOException">The directory cannot be opened or flushed.</exception>
    internal static void FSyncDirectory(string directory)
    {
        if (!IsLinux) return;
        var fd = Open(directory, ORdOnly | OCloexec | ODirectory, 0);
        if (fd < 0)
            throw new IOException($"{directory}: cannot open the directory to flush it (errno {Marshal.GetLastPInvokeError()}).");
        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        if (FSync(handle) != 0)
            throw new IOException($"{directory}: fsync of the directory failed (errno {Marshal.GetLastPInvokeError()}).");
    }
}

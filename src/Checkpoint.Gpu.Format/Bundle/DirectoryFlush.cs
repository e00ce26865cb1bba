using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace CheckpointGpu.Format;

/// <summary>
/// <c>fsync(2)</c> of a directory, which .NET does not expose: makes renames, creations and deletions in it durable.
/// Linux only; elsewhere a no-op (Windows/macOS commit metadata differently).
/// </summary>
internal static partial class DirectoryFlush
{
    private const int ORdOnly = 0x0;
    private const int OCloexec = 0x80000;

    // O_DIRECTORY differs between architectures (asm-generic vs x86).
    private static int ODirectory => RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm ? 0x4000 : 0x10000;

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int FSync(SafeFileHandle fd);

    /// <summary>Flushes <paramref name="directory"/>'s entries to stable storage.</summary>
    /// <exception cref="IOException">The directory cannot be opened or flushed.</exception>
    public static void Flush(string directory)
    {
        if (!OperatingSystem.IsLinux()) return;
        var fd = Open(directory, ORdOnly | OCloexec | ODirectory, 0);
        if (fd < 0)
            throw new IOException($"{directory}: cannot open the directory to flush it (errno {Marshal.GetLastPInvokeError()}).");
        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        if (FSync(handle) != 0)
            throw new IOException($"{directory}: fsync of the directory failed (errno {Marshal.GetLastPInvokeError()}).");
    }
}

using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace CheckpointGpu.Pipeline.Interop;

/// <summary>
/// A POSIX call .NET does not expose, for the directory lock: a plain <c>open(2)</c> that takes no <c>flock</c>.
/// (File IO itself — <c>O_DIRECT</c>, directory <c>fsync</c> — lives behind the storage seam in Format.)
/// </summary>
internal static partial class LibC
{
    private const int ORdOnly = 0x0;
    private const int OCloexec = 0x80000;

    internal static bool IsLinux => OperatingSystem.IsLinux();

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags, int mode);

    /// <summary>
    /// Reads up to <paramref name="maxBytes"/> bytes of a small file through a plain <c>open(2)</c>: unlike .NET's
    /// <see cref="FileStream"/> it takes no <c>flock</c>, so it can read a lock file another process holds exclusively.
    /// </summary>
    /// <returns>The bytes, or <see langword="null"/> when the file cannot be opened (or this is not Linux).</returns>
    internal static byte[]? TryReadWithoutLock(string path, int maxBytes)
    {
        if (!IsLinux) return null;
        var fd = Open(path, ORdOnly | OCloexec, 0);
        if (fd < 0) return null;
        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        var buffer = new byte[maxBytes];
        try
        {
            var n = RandomAccess.Read(handle, buffer, 0);
            return buffer[..n];
        }
        catch (IOException)
        {
            return null;
        }
    }
}

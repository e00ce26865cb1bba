using System.Runtime.InteropServices;

namespace CheckpointGpu.Devices.Interop;

/// <summary>The libc calls used to page-lock and to prefault host memory (Linux only; failure is not an error).</summary>
internal static unsafe partial class LibC
{
    [LibraryImport("libc", EntryPoint = "mlock", SetLastError = true)]
    internal static partial int MLock(void* address, nuint length);

    [LibraryImport("libc", EntryPoint = "munlock", SetLastError = true)]
    internal static partial int MUnlock(void* address, nuint length);

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    internal static partial int MAdvise(void* address, nuint length, int advice);

    /// <summary>Tries to page-lock a region; returns false (without throwing) when the limit (RLIMIT_MEMLOCK) or the platform refuses.</summary>
    internal static bool TryLock(void* address, nuint length)
    {
        if (!OperatingSystem.IsLinux()) return false;
        try { return MLock(address, length) == 0; }
        catch (DllNotFoundException) { return false; }
        catch (EntryPointNotFoundException) { return false; }
    }
}

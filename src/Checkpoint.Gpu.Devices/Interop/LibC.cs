using System.Runtime.InteropServices;

namespace CheckpointGpu.Devices.Interop;

/// <summary>The two libc calls used to page-lock host memory (Linux only; failure is not an error).</summary>
internal static unsafe partial class LibC
{
    [LibraryImport("libc", EntryPoint = "mlock", SetLastError = true)]
    internal static partial int MLock(void* address, nuint length);

    [LibraryImport("libc", EntryPoint = "munlock", SetLastError = true)]
    internal static partial int MUnlock(void* address, nuint length);

    /// <summary>Tries to page-lock a region; returns false (without throwing) when the limit (RLIMIT_MEMLOCK) or the platform refuses.</summary>
    internal static bool TryLock(void* address, nuint length)
    {
        if (!OperatingSystem.IsLinux()) return false;
        try { return MLock(address, length) == 0; }
        catch (DllNotFoundException) { return false; }
        catch (EntryPointNotFoundException) { return false; }
    }
}

using System.Runtime.InteropServices;

namespace CheckpointGpu.Devices.Interop;

/// <summary>The libc calls used to page-lock, prefault and back host memory with huge pages (Linux only; failure is not an error).</summary>
internal static unsafe partial class LibC
{
    [LibraryImport("libc", EntryPoint = "mlock", SetLastError = true)]
    internal static partial int MLock(void* address, nuint length);

    [LibraryImport("libc", EntryPoint = "munlock", SetLastError = true)]
    internal static partial int MUnlock(void* address, nuint length);

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    internal static partial int MAdvise(void* address, nuint length, int advice);

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial void* MMap(void* address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    internal static partial int MUnmap(void* address, nuint length);

    /// <summary>
    /// A fresh private anonymous mapping of <paramref name="length"/> bytes, readable and writable (<c>mmap(2)</c>;
    /// <c>PROT_READ | PROT_WRITE</c> = 3, <c>MAP_PRIVATE | MAP_ANONYMOUS</c> = 0x22 on Linux x86-64 and arm64), or null
    /// where refused or not Linux. Never-touched pages: advice such as huge pages applies to all of them.
    /// </summary>
    internal static void* TryMapAnonymous(nuint length)
    {
        if (!OperatingSystem.IsLinux() || !(RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.Arm64)) return null;
        try
        {
            var p = MMap(null, length, 3, 0x22, -1, 0);
            return p == (void*)-1 ? null : p;
        }
        catch (DllNotFoundException) { return null; }
        catch (EntryPointNotFoundException) { return null; }
    }

    /// <summary><c>MADV_HUGEPAGE</c> (Linux <c>include/uapi/asm-generic/mman-common.h</c>).</summary>
    private const int MadvHugePage = 14;

    /// <summary>Size of a transparent huge page on x86-64 and arm64 with 4 KiB base pages (2 MiB).</summary>
    internal const int HugePageSizeInBytes = 2 << 20;

    /// <summary>
    /// Asks for transparent huge pages on the whole 2 MiB pages inside a region not yet touched
    /// (<c>madvise(MADV_HUGEPAGE)</c>; Linux's default THP mode, <c>madvise</c>, uses them only where asked). Returns false
    /// (without throwing) where refused or not Linux; the memory works either way.
    /// </summary>
    /// <remarks>
    /// Why: an <c>O_DIRECT</c> request can carry at most the device's <c>max_segments</c> physically contiguous runs (254 on
    /// the reference VM's virtio disk). On 4 KiB pages that caps a request near 1 MiB whatever the read size; on 2 MiB pages a
    /// request reaches <c>max_sectors_kb</c> (4 MiB there). Reading 1 GiB cold into 8 MiB buffers, two in flight:
    /// 1.07–1.30 GB/s at 1.0–1.4 MiB per request on 4 KiB pages, 1.89–2.33 GB/s at 4 MiB per request on huge pages
    /// (<c>/sys/block/vda/stat</c>, same minutes). First-touch faults also fall 512-fold (MACHINE-LIMITS.md: memcpy into fresh
    /// memory 1.6 GB/s on 4 KiB pages, 7.8 GB/s on huge pages).
    /// </remarks>
    internal static bool TryAdviseHugePages(void* address, nuint length)
    {
        if (!OperatingSystem.IsLinux()) return false;
        var start = ((nuint)address + (nuint)HugePageSizeInBytes - 1) & ~(nuint)(HugePageSizeInBytes - 1);
        var end = ((nuint)address + length) & ~(nuint)(HugePageSizeInBytes - 1);
        if (end <= start) return false;
        try { return MAdvise((void*)start, end - start, MadvHugePage) == 0; }
        catch (DllNotFoundException) { return false; }
        catch (EntryPointNotFoundException) { return false; }
    }

    /// <summary>Tries to page-lock a region; returns false (without throwing) when the limit (RLIMIT_MEMLOCK) or the platform refuses.</summary>
    internal static bool TryLock(void* address, nuint length)
    {
        if (!OperatingSystem.IsLinux()) return false;
        try { return MLock(address, length) == 0; }
        catch (DllNotFoundException) { return false; }
        catch (EntryPointNotFoundException) { return false; }
    }
}

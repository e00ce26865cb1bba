using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using CheckpointGpu.Devices.Interop;

namespace CheckpointGpu.Devices.Cpu;

/// <summary>
/// Faults in CPU device buffers (native, and ILGPU's CPU accelerator's) about to be written (<see cref="DeviceBuffer.AdviseWillWrite"/>) on one dedicated
/// background thread, ahead of the writes (<c>madvise(MADV_POPULATE_WRITE)</c>, Linux ≥ 5.14, in 4 MiB steps from the
/// start of the buffer).
/// </summary>
/// <remarks>
/// <para>Why: fresh memory is first touched by a buffer's first write — a fill, or a restore's copy — and on the
/// reference VM page faults make that write 0.6–0.75 s per GiB (1.4–1.7 GB/s, below the disk's read speed), whereas
/// <c>MADV_POPULATE_WRITE</c> faults the same pages in 0.33–0.40 s per GiB without a trap per page, and in parallel with the
/// writer (measured with a C probe, 2 vCPUs, loaded machine: 1 GiB memset-faulted 0.61–0.76 s, populated 0.33–0.40 s).
/// Restore-on-create writes every byte of fresh buffers while the disk streams, so that write no longer waits for page
/// faults; a built model's buffers were faulted before, which is why restore-on-create was 1.5× slower than a restore
/// into a built model (A/B on a loaded machine, 4 alternating runs: 2.02 and 1.12 without the hint, 0.81 and 0.71 with
/// it). Only on request: a buffer that is filled right away (an initializer) gains little and pays an extra thread, and
/// a populate step holds the address-space lock, so the restore engine asks for it for its new destinations only.</para>
/// <para>Populating never changes a buffer's contents (the kernel only maps the pages), so it may run while the buffer is
/// written. Each step holds a reference on the buffer's <see cref="SafeHandle"/> (<see cref="SafeHandle.DangerousAddRef"/>),
/// so a disposed buffer is freed only after the step in progress (at most 4 MiB); its remaining steps are skipped. Work is
/// FIFO: buffers are populated in the order they were advised. Failure is never an error (another kernel or platform: the pages are
/// faulted by the first write, as before).</para>
/// </remarks>
internal static unsafe class BackgroundPrefault
{
    /// <summary>Buffers smaller than this are left to their first write (a trap per page is cheap for a few pages).</summary>
    internal const long MinimumLengthInBytes = 1 << 20;

    private const int StepInBytes = 4 << 20;

    /// <summary><c>MADV_POPULATE_WRITE</c> (Linux <c>include/uapi/asm-generic/mman-common.h</c>, since 5.14).</summary>
    private const int MadvPopulateWrite = 23;

    private static readonly BlockingCollection<(SafeHandle Handle, nint Address, long Length)> s_queue = new(new ConcurrentQueue<(SafeHandle, nint, long)>());
    private static readonly Lazy<Thread> s_thread = new(Start, LazyThreadSafetyMode.ExecutionAndPublication);
    private static volatile bool s_unsupported = !OperatingSystem.IsLinux();

    /// <summary>False on platforms or kernels without <c>MADV_POPULATE_WRITE</c> (known after the first attempt).</summary>
    internal static bool IsSupported => !s_unsupported;

    /// <summary>Populated bytes since process start (diagnostics and tests).</summary>
    internal static long PopulatedBytes;

    /// <summary>
    /// Queues the host memory at <paramref name="address"/> (<paramref name="lengthInBytes"/> bytes of a fresh buffer, kept
    /// alive by <paramref name="owner"/>: a native CPU block or an ILGPU CPU buffer) for populating; only the whole 4 KiB
    /// pages inside it are touched; a no-op when unsupported or small.
    /// </summary>
    internal static void Enqueue(SafeHandle owner, nint address, long lengthInBytes)
    {
        if (s_unsupported || lengthInBytes < MinimumLengthInBytes || address == 0) return;
        // madvise needs a page-aligned start: skip to the first whole page, stop at the last whole one.
        var start = (address + 4095) & ~(nint)4095;
        var length = (lengthInBytes - (start - address)) & ~4095L;
        if (length <= 0) return;
        _ = s_thread.Value;
        s_queue.Add((owner, start, length));
    }

    private static Thread Start()
    {
        var thread = new Thread(Run) { IsBackground = true, Name = "Checkpoint.Gpu CPU prefault", Priority = ThreadPriority.BelowNormal };
        thread.Start();
        return thread;
    }

    private static void Run()
    {
        foreach (var (handle, address, length) in s_queue.GetConsumingEnumerable())
        {
            if (s_unsupported) continue;
            for (long done = 0; done < length && !handle.IsClosed; done += StepInBytes)
            {
                var added = false;
                try
                {
                    handle.DangerousAddRef(ref added);
                }
                catch (ObjectDisposedException)
                {
                    break;   // disposed: nothing left to populate
                }
                try
                {
                    var p = (byte*)address + done;
                    var n = (nuint)Math.Min(StepInBytes, length - done);
                    if (!Populate(p, n)) break;
                    Interlocked.Add(ref PopulatedBytes, (long)n);
                }
                finally
                {
                    if (added) handle.DangerousRelease();
                }
            }
        }
    }

    /// <summary>One populate call; false when the kernel refuses (then, for EINVAL — an older kernel — never again).</summary>
    private static bool Populate(byte* address, nuint length)
    {
        // madvise needs a page-aligned start; every queued range starts on a page and each step is a multiple of 4 KiB.
        try
        {
            if (LibC.MAdvise(address, length, MadvPopulateWrite) == 0) return true;
            if (Marshal.GetLastPInvokeError() == 22) s_unsupported = true;   // EINVAL: MADV_POPULATE_WRITE unknown
            return false;
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            s_unsupported = true;
            return false;
        }
    }
}

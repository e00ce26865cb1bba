using System.Runtime.InteropServices;

namespace CheckpointGpu.Devices.Interop;

/// <summary>
/// Owns a block from <see cref="NativeMemory.AlignedAlloc(nuint, nuint)"/>, or for blocks of 2 MiB and more a fresh
/// anonymous mapping (<c>mmap</c>) aligned inside to 2 MiB (or wraps a caller's block without owning it).
/// </summary>
/// <remarks>Used for CPU device buffers and host pinned buffers. If the block was page-locked it is unlocked before it is freed.</remarks>
internal sealed unsafe class SafeAlignedMemoryHandle : SafeHandle
{
    private readonly nuint _lengthInBytes;
    private readonly bool _ownsMemory;
    private readonly bool _locked;

    // The whole mapping when the block is one (released with munmap), else null.
    private readonly void* _mappingBase;
    private readonly nuint _mappingLength;

    private SafeAlignedMemoryHandle(void* pointer, nuint lengthInBytes, bool ownsMemory, bool locked, void* mappingBase = null, nuint mappingLength = 0)
        : base(IntPtr.Zero, ownsHandle: true)
    {
        _mappingBase = mappingBase;
        _mappingLength = mappingLength;
        SetHandle((nint)pointer);
        _lengthInBytes = lengthInBytes;
        _ownsMemory = ownsMemory;
        _locked = locked;
        Interlocked.Increment(ref NativeObjectCounters.AlignedMemory);
    }

    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>Length of the block in bytes.</summary>
    internal nuint LengthInBytes => _lengthInBytes;

    /// <summary>True when <c>mlock</c> succeeded for this block.</summary>
    internal bool IsPageLocked => _locked;

    /// <summary>
    /// Allocates <paramref name="lengthInBytes"/> bytes (at least one byte) aligned to <paramref name="alignment"/>; blocks of
    /// 2 MiB or more start on a 2 MiB boundary and are backed by transparent huge pages where the kernel allows
    /// (<see cref="LibC.TryAdviseHugePages"/>: ~4× larger <c>O_DIRECT</c> requests, 1.7–1.9× the cold read rate on the
    /// reference VM, and far cheaper first touches).
    /// </summary>
    /// <returns>The handle, or <see langword="null"/> when the allocator reports out-of-memory.</returns>
    internal static SafeAlignedMemoryHandle? TryAllocate(long lengthInBytes, int alignment, bool pageLockAndPrefault)
    {
        var size = (nuint)Math.Max(1, lengthInBytes);
        if (pageLockAndPrefault) size = (size + (nuint)alignment - 1) & ~((nuint)alignment - 1);
        var huge = size >= LibC.HugePageSizeInBytes;
        void* p = null;
        void* mapping = null;
        nuint mappingLength = 0;
        if (huge)
        {
            // A fresh mapping, not the C heap: malloc may hand back pages another block already touched, which stay
            // 4 KiB pages whatever the advice. One huge page of slack to start on a 2 MiB boundary.
            alignment = Math.Max(alignment, LibC.HugePageSizeInBytes);
            mappingLength = size + (nuint)alignment;
            mapping = LibC.TryMapAnonymous(mappingLength);
            if (mapping is not null) p = (void*)(((nuint)mapping + (nuint)alignment - 1) & ~((nuint)alignment - 1));
        }
        if (p is null)
        {
            try { p = NativeMemory.AlignedAlloc(size, (nuint)alignment); }
            catch (OutOfMemoryException) { return null; }
        }
        // Before the first touch: pages faulted in afterwards come as huge pages.
        if (huge) LibC.TryAdviseHugePages(p, size);
        var locked = false;
        if (pageLockAndPrefault)
        {
            // Touch every page now: fresh memory is 2-10x slower on first use (MACHINE-LIMITS.md). mlock first: it faults
            // every page in without a trap per page, so the zeroing below runs on resident pages (64 MiB on the reference
            // VM: mlock then memset 32-50 ms, memset then mlock 43-109 ms; C probe, loaded machine).
            locked = LibC.TryLock(p, size);
            NativeMemory.Clear(p, size);
        }
        return new SafeAlignedMemoryHandle(p, size, ownsMemory: true, locked, mapping, mapping is null ? 0 : mappingLength);
    }

    /// <summary>Wraps memory the caller allocated. When <paramref name="ownsMemory"/> is true it is released with <see cref="NativeMemory.AlignedFree(void*)"/>.</summary>
    internal static SafeAlignedMemoryHandle Wrap(nint pointer, long lengthInBytes, bool ownsMemory) =>
        new((void*)pointer, (nuint)lengthInBytes, ownsMemory, locked: false);

    protected override bool ReleaseHandle()
    {
        if (_locked) LibC.MUnlock((void*)handle, _lengthInBytes);
        if (_ownsMemory)
        {
            if (_mappingBase is not null) LibC.MUnmap(_mappingBase, _mappingLength);
            else NativeMemory.AlignedFree((void*)handle);
        }
        Interlocked.Decrement(ref NativeObjectCounters.AlignedMemory);
        return true;
    }
}

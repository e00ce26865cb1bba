using CheckpointGpu.Devices;

namespace CheckpointGpu.Devices.Tests;

/// <summary>Pinned host buffers beyond 2 GiB: every slice handed out as Memory must be usable (RandomAccess takes them).</summary>
public sealed class PinnedHostBufferLargeTests
{
    [Fact]
    [Trait("Category", "Large")]
    public void GetMemory_OnBufferOver2GiB_SlicesAnywhereAreUsable()
    {
        if (Environment.GetEnvironmentVariable("CKPT_SKIP_LARGE") == "1") return;   // opt-out documented in README
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var pinned = acc.AllocatePinned((2L << 30) + 8192);
        foreach (var offset in new[] { 0L, (1L << 30), (2L << 30) + 4096 })
        {
            var memory = pinned.GetMemory(offset, 4096);
            memory.Span.Fill((byte)(offset >> 20));
            Assert.Equal((byte)(offset >> 20), pinned.GetSpan(offset + 4095, 1)[0]);
            using var handle = memory.Pin();
            unsafe { Assert.Equal((byte)(offset >> 20), *(byte*)handle.Pointer); }
        }
    }
}

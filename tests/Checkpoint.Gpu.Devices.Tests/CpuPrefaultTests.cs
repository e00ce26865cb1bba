using CheckpointGpu.Devices;
using CheckpointGpu.Devices.Cpu;

namespace CheckpointGpu.Devices.Tests;

/// <summary>
/// CPU device buffers advised with <see cref="DeviceBuffer.AdviseWillWrite"/> are faulted in on a background thread
/// (<see cref="BackgroundPrefault"/>): that must never change what a buffer holds, nor outlive a disposed buffer.
/// </summary>
public sealed class CpuPrefaultTests : IDisposable
{
    private readonly Accelerator _acc = Accelerator.Create(AcceleratorKind.Cpu);

    public void Dispose() => _acc.Dispose();

    /// <summary>
    /// A value written at once, while the buffer is still being populated, reads back intact (also after populating ended),
    /// on both host-memory accelerators (ILGPU's CPU buffers need not start on a page: only their whole pages are populated).
    /// </summary>
    [Theory]
    [InlineData(AcceleratorKind.Cpu)]
    [InlineData(AcceleratorKind.IlgpuCpu)]
    public async Task LargeBuffer_WrittenWhilePopulating_KeepsItsBytes(AcceleratorKind kind)
    {
        const int size = 48 << 20;
        using var acc = kind == AcceleratorKind.Cpu ? null : Accelerator.Create(kind);
        var accelerator = acc ?? _acc;
        var data = TestData.Random(size, 7);
        var before = Interlocked.Read(ref BackgroundPrefault.PopulatedBytes);
        using var buffer = accelerator.Allocate(size);
        buffer.AdviseWillWrite();
        accelerator.DefaultStream.EnqueueCopyFromHost(data, buffer.AsView());
        await accelerator.DefaultStream.SynchronizeAsync();
        // The background thread walks the whole buffer (when the kernel supports MADV_POPULATE_WRITE).
        const int wholePages = size - 2 * 4096;
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (BackgroundPrefault.IsSupported && Interlocked.Read(ref BackgroundPrefault.PopulatedBytes) - before < wholePages && DateTime.UtcNow < deadline)
            await Task.Delay(10);
        var back = new byte[size];
        accelerator.DefaultStream.EnqueueCopyToHost(buffer.AsView(), (Memory<byte>)back);
        await accelerator.DefaultStream.SynchronizeAsync();
        Assert.True(data.AsSpan().SequenceEqual(back));
        if (BackgroundPrefault.IsSupported) Assert.True(Interlocked.Read(ref BackgroundPrefault.PopulatedBytes) - before >= wholePages, "the buffer was not populated");
    }

    /// <summary>The hint on a disposed buffer throws; on a small or external buffer it is accepted and does nothing.</summary>
    [Fact]
    public void AdviseWillWrite_DisposedThrows_SmallAccepted()
    {
        using (var small = _acc.Allocate(4096)) small.AdviseWillWrite();
        var gone = _acc.Allocate(1 << 20);
        gone.Dispose();
        Assert.Throws<ObjectDisposedException>(gone.AdviseWillWrite);
    }

    /// <summary>Buffers disposed while queued or being populated are freed safely; later buffers still work.</summary>
    [Fact]
    public async Task BuffersDisposedWhilePopulating_AreFreedSafely()
    {
        for (var i = 0; i < 16; i++)
        {
            var b = _acc.Allocate(32 << 20);
            b.AdviseWillWrite();
            b.Dispose();
        }
        const int size = 8 << 20;
        var data = TestData.Random(size, 9);
        using var buffer = _acc.Allocate(size);
        _acc.DefaultStream.EnqueueCopyFromHost(data, buffer.AsView());
        var back = new byte[size];
        _acc.DefaultStream.EnqueueCopyToHost(buffer.AsView(), (Memory<byte>)back);
        await _acc.DefaultStream.SynchronizeAsync();
        Assert.True(data.AsSpan().SequenceEqual(back));
    }
}

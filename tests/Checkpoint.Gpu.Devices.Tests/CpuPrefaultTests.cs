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

    /// <summary>A value written at once, while the buffer is still being populated, reads back intact (also after populating ended).</summary>
    [Fact]
    public async Task LargeBuffer_WrittenWhilePopulating_KeepsItsBytes()
    {
        const int size = 48 << 20;
        var data = TestData.Random(size, 7);
        var before = Interlocked.Read(ref BackgroundPrefault.PopulatedBytes);
        using var buffer = _acc.Allocate(size);
        buffer.AdviseWillWrite();
        _acc.DefaultStream.EnqueueCopyFromHost(data, buffer.AsView());
        await _acc.DefaultStream.SynchronizeAsync();
        // The background thread walks the whole buffer (when the kernel supports MADV_POPULATE_WRITE).
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (BackgroundPrefault.IsSupported && Interlocked.Read(ref BackgroundPrefault.PopulatedBytes) - before < size && DateTime.UtcNow < deadline)
            await Task.Delay(10);
        var back = new byte[size];
        _acc.DefaultStream.EnqueueCopyToHost(buffer.AsView(), (Memory<byte>)back);
        await _acc.DefaultStream.SynchronizeAsync();
        Assert.True(data.AsSpan().SequenceEqual(back));
        if (BackgroundPrefault.IsSupported) Assert.True(Interlocked.Read(ref BackgroundPrefault.PopulatedBytes) - before >= size, "the buffer was not populated");
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

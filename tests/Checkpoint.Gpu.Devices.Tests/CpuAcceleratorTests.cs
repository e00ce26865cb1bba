using System.Runtime.InteropServices;
using CheckpointGpu.Devices;
using CheckpointGpu.Devices.Interop;

namespace CheckpointGpu.Devices.Tests;

/// <summary>The contract on the CPU backend (runs everywhere), plus CPU-only behaviour.</summary>
public sealed class CpuAcceleratorTests : AcceleratorContractTests
{
    protected override Accelerator CreateAccelerator() => Accelerator.Create(AcceleratorKind.Cpu);

    [Fact]
    public async Task WrapExternal_CallerOwnedMemory_IsReadAndWrittenInPlace()
    {
        const int size = 4099;
        var data = TestData.Random(size, 1);
        unsafe
        {
            var memory = NativeMemory.AlignedAlloc(size, 64);
            try
            {
                using (var wrapped = Accelerator.WrapExternal((nint)memory, size, ownsMemory: false))
                {
                    Assert.True(wrapped.IsExternal);
                    Assert.False(wrapped.OwnsMemory);
                    Assert.Equal((nint)memory, wrapped.DangerousGetNativeHandle());
                    Accelerator.DefaultStream.EnqueueCopyFromHost(data, wrapped.AsView());
                    Accelerator.DefaultStream.Synchronize();
                }
                Assert.Equal(data, new ReadOnlySpan<byte>(memory, size).ToArray()); // still valid: not owned
            }
            finally
            {
                NativeMemory.AlignedFree(memory);
            }
        }
        await Task.CompletedTask;
    }

    [Fact]
    public void WrapExternal_OwnsMemory_FreesOnDispose()
    {
        var before = NativeObjectCounters.Snapshot().AlignedMemory;
        DeviceBuffer wrapped;
        unsafe
        {
            wrapped = Accelerator.WrapExternal((nint)NativeMemory.AlignedAlloc(128, 4096), 128, ownsMemory: true);
        }
        Assert.True(wrapped.OwnsMemory);
        wrapped.Dispose();
        Assert.True(NativeObjectCounters.Snapshot().AlignedMemory <= before, "the wrapped block's handle must be released");
        Assert.Throws<ArgumentException>(() => Accelerator.WrapExternal(0, 1, false));
        Assert.Throws<ArgumentOutOfRangeException>(() => Accelerator.WrapExternal(1, -1, false));
    }

    [Fact]
    public void Create_UndefinedKind_ThrowsArgumentOutOfRange()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Accelerator.Create((AcceleratorKind)42));
        Assert.False(Accelerator.IsSupported((AcceleratorKind)42));
    }
}

using CheckpointGpu.Devices;
using CheckpointGpu.Devices.Ilgpu;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using Xunit.Abstractions;

namespace CheckpointGpu.Devices.Tests;

/// <summary>The contract on ILGPU's CPU accelerator (runs everywhere), plus ILGPU-specific behaviour.</summary>
public sealed class IlgpuCpuAcceleratorTests : AcceleratorContractTests
{
    protected override Devices.Accelerator CreateAccelerator() => Devices.Accelerator.Create(AcceleratorKind.IlgpuCpu);

    [Fact]
    public async Task Wrap_UserIlgpuBuffer_IsReadAndWrittenInPlaceAndStaysOwnedByTheUser()
    {
        var ilgpu = (IlgpuAccelerator)Accelerator;
        using var users = ilgpu.Device.Allocate1D<float>(1025);
        var values = Enumerable.Range(0, 1025).Select(i => i * 0.5f).ToArray();
        users.CopyFromCPU(values);
        var back = new byte[1025 * 4];
        using (var wrapped = ilgpu.Wrap(users))
        {
            Assert.True(wrapped.IsExternal);
            Assert.False(wrapped.OwnsMemory);
            Assert.Equal(1025 * 4, wrapped.LengthInBytes);
            await Accelerator.DefaultStream.EnqueueCopyToHost(wrapped.AsView(), back).Completion;
            await Accelerator.DefaultStream.EnqueueFill(wrapped.View(0, 8), 0).Completion;
        }
        Assert.Equal(values, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(back).ToArray());
        var after = users.GetAsArray1D();       // still alive after the wrapper died
        Assert.Equal(0f, after[0]);
        Assert.Equal(0f, after[1]);
        Assert.Equal(values[2..], after[2..]);
    }

    [Fact]
    public void Wrap_BufferOfAnotherIlgpuAccelerator_ThrowsArgumentException()
    {
        using var context = Context.Create(b => b.DefaultCPU());
        using var other = context.GetCPUDevice(0).CreateAccelerator(context);
        using var foreign = other.Allocate1D<int>(10);
        var ex = Assert.Throws<ArgumentException>(() => ((IlgpuAccelerator)Accelerator).Wrap(foreign));
        Assert.Equal("buffer", ex.ParamName);
        Assert.Throws<NotSupportedException>(() => Accelerator.WrapExternal(1, 1, false));
    }

    [Fact]
    public async Task FromExisting_UsersAccelerator_SharesItsBuffersAndLeavesItAlive()
    {
        using var context = Context.Create(b => b.DefaultCPU());
        using var device = context.GetCPUDevice(0).CreateAccelerator(context);
        using var buffer = device.Allocate1D<long>(17);
        buffer.CopyFromCPU(Enumerable.Range(0, 17).Select(i => (long)i * i).ToArray());
        var back = new byte[17 * 8];
        await using (var ours = IlgpuAccelerator.FromExisting(device))
        {
            Assert.Equal(AcceleratorKind.IlgpuCpu, ours.Kind);
            Assert.Equal(-1, ours.Info.Ordinal);
            using var wrapped = ours.Wrap(buffer);
            await ours.DefaultStream.EnqueueCopyToHost(wrapped.AsView(), back).Completion;
        }
        Assert.False(device.IsDisposed);
        Assert.Equal(16L * 16, BitConverter.ToInt64(back, 16 * 8));
        Assert.Equal(17, buffer.GetAsArray1D().Length); // the user's buffer is still usable
    }

    [Fact]
    public async Task Enqueue_IlgpuKernel_RunsInStreamOrderBetweenCopies()
    {
        var ilgpu = (IlgpuAccelerator)Accelerator;
        var kernel = ilgpu.Device.LoadAutoGroupedKernel<Index1D, ArrayView<int>>(static (i, v) => v[i] = v[i] * 2 + 1);
        using var buffer = Accelerator.Allocate(8197 * 4);
        var input = Enumerable.Range(0, 8197).ToArray();
        var bytes = new byte[input.Length * 4];
        Buffer.BlockCopy(input, 0, bytes, 0, bytes.Length);
        var stream = Accelerator.CreateStream();
        stream.EnqueueCopyFromHost(bytes, buffer.AsView());
        ilgpu.Enqueue(stream, [buffer], s => kernel(s, 8197, ilgpu.GetView<int>(buffer.AsView())));
        var back = new byte[bytes.Length];
        await stream.EnqueueCopyToHost(buffer.AsView(), back).Completion;
        for (var i = 0; i < input.Length; i++) Assert.Equal(2 * i + 1, BitConverter.ToInt32(back, 4 * i));
        Assert.Throws<ArgumentException>(() => ilgpu.GetView<int>(buffer.View(2, 8)));
        stream.Dispose();
    }

    [Fact]
    public async Task AllocatePinned_OnIlgpu_IsAlignedHostMemoryUsableByCopies()
    {
        using var pinned = Accelerator.AllocatePinned(3 * 4096 + 5);
        Assert.Equal(0, pinned.Pointer % 4096);
        using var device = Accelerator.Allocate(4096);
        TestData.Random(4096, 9).CopyTo(pinned.GetSpan(5, 4096));
        Accelerator.DefaultStream.EnqueueCopyFromHost(pinned, device.AsView(), 5);
        await Accelerator.DefaultStream.EnqueueCopyToHost(device.AsView(), pinned, 8192).Completion;
        Assert.Equal(pinned.GetSpan(5, 4096).ToArray(), pinned.GetSpan(8192, 4096).ToArray());
    }
}

/// <summary>Support and refusal of the ILGPU kinds: <see cref="Devices.Accelerator.IsSupported"/> tells the truth and unsupported kinds give their reason.</summary>
public sealed class IlgpuKindTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(AcceleratorKind.IlgpuCpu)]
    [InlineData(AcceleratorKind.Cuda)]
    [InlineData(AcceleratorKind.IlgpuOpenCL)]
    public void IsSupported_AgreesWithEnumerateAndCreate(AcceleratorKind kind)
    {
        var supported = Devices.Accelerator.IsSupported(kind);
        var devices = Devices.Accelerator.Enumerate(kind);
        var reason = Devices.Accelerator.GetUnsupportedReason(kind);
        output.WriteLine($"{kind}: supported={supported}, {devices.Count} device(s), reason: {reason ?? "-"}");
        Assert.Equal(supported, devices.Count > 0);
        Assert.Equal(supported, reason is null);
        if (supported)
        {
            using var accelerator = Devices.Accelerator.Create(kind);
            Assert.Equal(kind, accelerator.Kind);
            Assert.IsType<IlgpuAccelerator>(accelerator);
        }
        else
        {
            var ex = Assert.Throws<NotSupportedException>(() => Devices.Accelerator.Create(kind));
            Assert.Contains(reason!, ex.Message);
        }
    }

    [Fact]
    public void IlgpuOpenCL_OnPoclOnly_IsRefusedWithIlgpusReason()
    {
        var native = Devices.Accelerator.Enumerate(AcceleratorKind.OpenCL);
        if (native.Count == 0 || !native.All(d => d.Vendor.Contains("pocl", StringComparison.OrdinalIgnoreCase) || d.Name.StartsWith("pthread", StringComparison.Ordinal) || d.Name.StartsWith("cpu", StringComparison.Ordinal)))
        {
            output.WriteLine("not a PoCL-only machine: nothing to check");
            return;
        }
        Assert.False(Devices.Accelerator.IsSupported(AcceleratorKind.IlgpuOpenCL));
        var reason = Devices.Accelerator.GetUnsupportedReason(AcceleratorKind.IlgpuOpenCL)!;
        output.WriteLine(reason);
        Assert.Contains("GenericAddressSpace", reason);
    }
}

/// <summary>The contract on CUDA through ILGPU: runs only where ILGPU finds a CUDA device, otherwise skips with the reason.</summary>
[RequiresAccelerator(AcceleratorKind.Cuda)]
public sealed class CudaAcceleratorTests : AcceleratorContractTests
{
    protected override Devices.Accelerator CreateAccelerator() => Devices.Accelerator.Create(AcceleratorKind.Cuda);
}

/// <summary>The contract on ILGPU's OpenCL accelerator: runs only on OpenCL 2.0+ devices ILGPU accepts (not PoCL), otherwise skips with the reason.</summary>
[RequiresAccelerator(AcceleratorKind.IlgpuOpenCL)]
public sealed class IlgpuOpenClAcceleratorTests : AcceleratorContractTests
{
    protected override Devices.Accelerator CreateAccelerator() => Devices.Accelerator.Create(AcceleratorKind.IlgpuOpenCL);
}

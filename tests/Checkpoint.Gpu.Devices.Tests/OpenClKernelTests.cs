using CheckpointGpu.Devices;
using CheckpointGpu.Devices.Interop;
using CheckpointGpu.Devices.OpenCL;

namespace CheckpointGpu.Devices.Tests;

/// <summary>The kernel-launch seam: programs from native/opencl built lazily, launched in stream order.</summary>
public sealed class OpenClKernelTests : IDisposable
{
    private readonly OpenCLAccelerator? _accelerator;

    public OpenClKernelTests()
    {
        if (Accelerator.IsSupported(AcceleratorKind.OpenCL)) _accelerator = (OpenCLAccelerator)Accelerator.Create(AcceleratorKind.OpenCL);
    }

    private OpenCLAccelerator Ocl => _accelerator ?? throw new InvalidOperationException("CI=true but no OpenCL device.");

    public void Dispose() => _accelerator?.Dispose();

    [OpenClFact]
    public async Task EnqueueKernel_FillU8AtOffset_OrderedWithCopies()
    {
        const int size = 10_001;
        var stream = Ocl.CreateStream();
        using var buffer = Ocl.Allocate(size);
        var kernel = Ocl.GetKernel("fill", "fill_u8");
        Assert.Same(kernel, Ocl.GetKernel("fill", "fill_u8"));

        stream.EnqueueFill(buffer.AsView(), 0x11);
        Ocl.EnqueueKernel(stream, kernel, new KernelRange(4096),
            KernelArgument.FromBuffer(buffer), KernelArgument.FromUInt64(100), KernelArgument.FromUInt64(4000), KernelArgument.FromByte(0x7F));
        var back = new byte[size];
        await stream.EnqueueCopyToHost(buffer.AsView(), back).Completion;

        for (var i = 0; i < size; i++)
            Assert.Equal(i is >= 100 and < 4100 ? 0x7F : 0x11, back[i]);
    }

    [OpenClFact]
    public async Task EnqueueKernel_TwoDimensionalFill_WritesOnlyTheSubmatrix()
    {
        const int ld = 37, rows = 9, columns = 20;
        using var buffer = Ocl.Allocate(ld * rows * sizeof(float));
        var stream = Ocl.DefaultStream;
        stream.EnqueueFill(buffer.AsView(), 0);
        Ocl.EnqueueKernel(stream, Ocl.GetKernel("fill", "fill_matrix_f32"), new KernelRange(32, 16),
            KernelArgument.FromBuffer(buffer), KernelArgument.FromUInt64(ld), KernelArgument.FromUInt64(rows), KernelArgument.FromUInt64(columns),
            KernelArgument.FromSingle(2.5f));
        var back = new byte[ld * rows * sizeof(float)];
        await stream.EnqueueCopyToHost(buffer.AsView(), back).Completion;
        var floats = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(back);
        for (var r = 0; r < rows; r++)
            for (var c = 0; c < ld; c++)
                Assert.Equal(c < columns ? 2.5f : 0f, floats[r * ld + c]);
    }

    [OpenClFact]
    public void GetKernel_UnknownProgramOrKernel_Throws()
    {
        Assert.Throws<ArgumentException>(() => Ocl.GetKernel("no_such_program", "k"));
        var ex = Assert.Throws<OpenCLException>(() => Ocl.GetKernel("fill", "no_such_kernel"));
        Assert.Equal("CL_INVALID_KERNEL_NAME", ex.NativeErrorName);
        Assert.Equal("clCreateKernel", ex.FailingCall);
    }

    [OpenClFact]
    public void BuildProgram_SyntaxError_ThrowsWithBuildLog()
    {
        var ex = Assert.Throws<OpenCLException>(() => Ocl.BuildProgram("broken", "__kernel void k(__global int* p) { p[0] = ; }"));
        Assert.Equal("CL_BUILD_PROGRAM_FAILURE", ex.NativeErrorName);
        Assert.Contains("Build log", ex.Message);
        Assert.Contains("error", ex.Message, StringComparison.OrdinalIgnoreCase);
    }

    [OpenClFact]
    public void EnqueueKernel_BadArguments_ThrowsBeforeEnqueue()
    {
        var kernel = Ocl.GetKernel("fill", "fill_u8");
        using var other = Accelerator.Create(AcceleratorKind.OpenCL);
        using var foreign = other.Allocate(16);
        using var local = Ocl.Allocate(16);
        Assert.Throws<ArgumentException>(() => Ocl.EnqueueKernel(other.DefaultStream, kernel, new KernelRange(1)));
        Assert.Throws<ArgumentException>(() => Ocl.EnqueueKernel(Ocl.DefaultStream, kernel, new KernelRange(1), KernelArgument.FromBuffer(foreign)));
        Assert.Throws<ArgumentOutOfRangeException>(() => Ocl.EnqueueKernel(Ocl.DefaultStream, kernel, new KernelRange(0)));
        var wrongSize = Assert.Throws<OpenCLException>(() => Ocl.EnqueueKernel(Ocl.DefaultStream, kernel, new KernelRange(1),
            KernelArgument.FromBuffer(local), KernelArgument.FromUInt32(0), KernelArgument.FromUInt64(1), KernelArgument.FromByte(1)));
        Assert.Equal("clSetKernelArg", wrongSize.FailingCall);
        Assert.Equal(0, Ocl.DefaultStream.PendingOperationCount);
    }
}

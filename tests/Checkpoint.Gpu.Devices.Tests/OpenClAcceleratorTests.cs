using CheckpointGpu.Devices;
using CheckpointGpu.Devices.OpenCL;

namespace CheckpointGpu.Devices.Tests;

/// <summary>The contract on the OpenCL backend (PoCL here and in CI), plus OpenCL-only behaviour.</summary>
[RequiresAccelerator(AcceleratorKind.OpenCL)]
public sealed class OpenClAcceleratorTests : AcceleratorContractTests
{
    protected override Accelerator CreateAccelerator()
    {
        BackendRequirement.Require(AcceleratorKind.OpenCL);
        return Accelerator.Create(AcceleratorKind.OpenCL);
    }

    [OpenClFact]
    public async Task WrapExternal_ClMemFromSharedContext_CopiesWithoutOwning()
    {
        const int size = 5000;
        var data = TestData.Random(size, 2);
        var ocl = (OpenCLAccelerator)Accelerator;
        using var owner = Accelerator.Allocate(size);
        using (var sharing = OpenCLAccelerator.CreateFromExistingContext(ocl.Context.DangerousGetHandle(), ocl.Device))
        {
            Assert.Equal(-1, sharing.Info.Ordinal);
            using var wrapped = sharing.WrapExternal(owner.DangerousGetNativeHandle(), size, ownsMemory: false);
            await sharing.DefaultStream.EnqueueCopyFromHost(data, wrapped.AsView()).Completion;
        }
        var back = new byte[size];
        await Accelerator.DefaultStream.EnqueueCopyToHost(owner.AsView(), back).Completion; // owner still valid after the wrapper died
        Assert.Equal(data, back);
    }

    [OpenClFact]
    public void WrapExternal_ClMemOfAnotherContextOrTooShort_ThrowsArgumentException()
    {
        using var other = Accelerator.Create(AcceleratorKind.OpenCL);
        using var foreign = other.Allocate(100);
        var ex = Assert.Throws<ArgumentException>(() => Accelerator.WrapExternal(foreign.DangerousGetNativeHandle(), 100, ownsMemory: false));
        Assert.Contains("context", ex.Message);
        using var local = Accelerator.Allocate(100);
        var shortEx = Assert.Throws<ArgumentException>(() => Accelerator.WrapExternal(local.DangerousGetNativeHandle(), 101, ownsMemory: false));
        Assert.Contains("100 bytes", shortEx.Message);
    }

    [OpenClFact]
    public void OpenCLException_ErrorCode_CarriesSymbolicNameAndCall()
    {
        var ex = new OpenCLException(-4, "clCreateBuffer");
        Assert.Equal("CL_MEM_OBJECT_ALLOCATION_FAILURE", ex.NativeErrorName);
        Assert.Equal("clCreateBuffer", ex.FailingCall);
        Assert.Equal(AcceleratorKind.OpenCL, ex.Kind);
        Assert.Contains("clCreateBuffer failed with CL_MEM_OBJECT_ALLOCATION_FAILURE (-4)", ex.Message);
        Assert.Equal("CL_UNKNOWN_ERROR(-9999)", new OpenCLException(-9999, "x").NativeErrorName);
    }

    [OpenClFact]
    public void AllocatePinned_OnOpenCL_IsMappedHostMemory()
    {
        using var pinned = Accelerator.AllocatePinned(1 << 20);
        Assert.True(pinned.IsPageLocked);
        Assert.Equal(0, pinned.Pointer % 4096);
    }
}

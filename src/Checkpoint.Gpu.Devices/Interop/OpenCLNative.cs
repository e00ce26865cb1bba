using System.Runtime.InteropServices;

namespace CheckpointGpu.Devices.Interop;

/// <summary>
/// OpenCL 1.2/2.0/3.0 entry points of the ICD loader (<c>libOpenCL.so.1</c>), declared from the Khronos headers.
/// Handle parameters that we own are typed as our SafeHandles (the generated marshaller AddRefs them for the call);
/// release paths use raw <see cref="nint"/> because they run inside <c>ReleaseHandle</c>.
/// </summary>
internal static unsafe partial class OpenCLNative
{
    internal const string LibraryName = "libOpenCL.so.1";

    // cl_device_type
    internal const ulong CL_DEVICE_TYPE_ALL = 0xFFFFFFFF;

    // cl_platform_info
    internal const uint CL_PLATFORM_VERSION = 0x0901;
    internal const uint CL_PLATFORM_NAME = 0x0902;

    // cl_device_info
    internal const uint CL_DEVICE_TYPE = 0x1000;
    internal const uint CL_DEVICE_MAX_MEM_ALLOC_SIZE = 0x1010;
    internal const uint CL_DEVICE_GLOBAL_MEM_SIZE = 0x101F;
    internal const uint CL_DEVICE_NAME = 0x102B;
    internal const uint CL_DEVICE_VENDOR = 0x102C;
    internal const uint CL_DRIVER_VERSION = 0x102D;
    internal const uint CL_DEVICE_VERSION = 0x102F;

    // cl_context_properties / info
    internal const nint CL_CONTEXT_PLATFORM = 0x1084;

    // cl_mem_flags
    internal const ulong CL_MEM_READ_WRITE = 1 << 0;
    internal const ulong CL_MEM_ALLOC_HOST_PTR = 1 << 4;

    // cl_map_flags
    internal const ulong CL_MAP_READ = 1 << 0;
    internal const ulong CL_MAP_WRITE = 1 << 1;

    // cl_mem_info
    internal const uint CL_MEM_SIZE = 0x1102;
    internal const uint CL_MEM_CONTEXT = 0x1106;

    // cl_program_build_info
    internal const uint CL_PROGRAM_BUILD_LOG = 0x1183;

    // command execution status
    internal const int CL_COMPLETE = 0x0;

    [LibraryImport(LibraryName)]
    internal static partial int clGetPlatformIDs(uint numEntries, nint* platforms, uint* numPlatforms);

    [LibraryImport(LibraryName)]
    internal static partial int clGetPlatformInfo(nint platform, uint paramName, nuint valueSize, void* value, nuint* valueSizeRet);

    [LibraryImport(LibraryName)]
    internal static partial int clGetDeviceIDs(nint platform, ulong deviceType, uint numEntries, nint* devices, uint* numDevices);

    [LibraryImport(LibraryName)]
    internal static partial int clGetDeviceInfo(nint device, uint paramName, nuint valueSize, void* value, nuint* valueSizeRet);

    [LibraryImport(LibraryName)]
    internal static partial nint clCreateContext(nint* properties, uint numDevices, nint* devices, nint notify, nint userData, int* errcode);

    [LibraryImport(LibraryName)]
    internal static partial int clRetainContext(nint context);

    [LibraryImport(LibraryName)]
    internal static partial int clReleaseContext(nint context);

    [LibraryImport(LibraryName)]
    internal static partial nint clCreateCommandQueueWithProperties(SafeClContextHandle context, nint device, ulong* properties, int* errcode);

    [LibraryImport(LibraryName)]
    internal static partial nint clCreateCommandQueue(SafeClContextHandle context, nint device, ulong properties, int* errcode);

    [LibraryImport(LibraryName)]
    internal static partial int clReleaseCommandQueue(nint queue);

    [LibraryImport(LibraryName)]
    internal static partial int clFlush(SafeClCommandQueueHandle queue);

    [LibraryImport(LibraryName)]
    internal static partial int clFinish(SafeClCommandQueueHandle queue);

    [LibraryImport(LibraryName)]
    internal static partial nint clCreateBuffer(SafeClContextHandle context, ulong flags, nuint size, void* hostPtr, int* errcode);

    [LibraryImport(LibraryName)]
    internal static partial int clRetainMemObject(nint memobj);

    [LibraryImport(LibraryName)]
    internal static partial int clReleaseMemObject(nint memobj);

    [LibraryImport(LibraryName)]
    internal static partial int clGetMemObjectInfo(nint memobj, uint paramName, nuint valueSize, void* value, nuint* valueSizeRet);

    [LibraryImport(LibraryName)]
    internal static partial int clEnqueueReadBuffer(SafeClCommandQueueHandle queue, SafeClMemHandle buffer, uint blocking, nuint offset, nuint size, void* ptr,
        uint numEventsInWaitList, nint* eventWaitList, nint* evt);

    [LibraryImport(LibraryName)]
    internal static partial int clEnqueueWriteBuffer(SafeClCommandQueueHandle queue, SafeClMemHandle buffer, uint blocking, nuint offset, nuint size, void* ptr,
        uint numEventsInWaitList, nint* eventWaitList, nint* evt);

    [LibraryImport(LibraryName)]
    internal static partial int clEnqueueCopyBuffer(SafeClCommandQueueHandle queue, SafeClMemHandle source, SafeClMemHandle destination,
        nuint sourceOffset, nuint destinationOffset, nuint size, uint numEventsInWaitList, nint* eventWaitList, nint* evt);

    [LibraryImport(LibraryName)]
    internal static partial int clEnqueueFillBuffer(SafeClCommandQueueHandle queue, SafeClMemHandle buffer, void* pattern, nuint patternSize,
        nuint offset, nuint size, uint numEventsInWaitList, nint* eventWaitList, nint* evt);

    [LibraryImport(LibraryName)]
    internal static partial int clEnqueueMarkerWithWaitList(SafeClCommandQueueHandle queue, uint numEventsInWaitList, nint* eventWaitList, nint* evt);

    [LibraryImport(LibraryName)]
    internal static partial void* clEnqueueMapBuffer(SafeClCommandQueueHandle queue, SafeClMemHandle buffer, uint blocking, ulong mapFlags,
        nuint offset, nuint size, uint numEventsInWaitList, nint* eventWaitList, nint* evt, int* errcode);

    [LibraryImport(LibraryName)]
    internal static partial int clEnqueueUnmapMemObject(nint queue, nint memobj, void* mappedPtr, uint numEventsInWaitList, nint* eventWaitList, nint* evt);

    [LibraryImport(LibraryName)]
    internal static partial int clSetEventCallback(nint evt, int commandExecCallbackType, delegate* unmanaged<nint, int, nint, void> notify, nint userData);

    [LibraryImport(LibraryName)]
    internal static partial int clWaitForEvents(uint numEvents, nint* eventList);

    [LibraryImport(LibraryName)]
    internal static partial int clReleaseEvent(nint evt);

    [LibraryImport(LibraryName)]
    internal static partial nint clCreateProgramWithSource(SafeClContextHandle context, uint count, byte** strings, nuint* lengths, int* errcode);

    [LibraryImport(LibraryName)]
    internal static partial int clBuildProgram(SafeClProgramHandle program, uint numDevices, nint* devices, byte* options, nint notify, nint userData);

    [LibraryImport(LibraryName)]
    internal static partial int clGetProgramBuildInfo(SafeClProgramHandle program, nint device, uint paramName, nuint valueSize, void* value, nuint* valueSizeRet);

    [LibraryImport(LibraryName)]
    internal static partial int clReleaseProgram(nint program);

    [LibraryImport(LibraryName)]
    internal static partial nint clCreateKernel(SafeClProgramHandle program, byte* kernelName, int* errcode);

    [LibraryImport(LibraryName)]
    internal static partial int clReleaseKernel(nint kernel);

    [LibraryImport(LibraryName)]
    internal static partial int clSetKernelArg(SafeClKernelHandle kernel, uint argIndex, nuint argSize, void* argValue);

    [LibraryImport(LibraryName)]
    internal static partial int clEnqueueNDRangeKernel(SafeClCommandQueueHandle queue, SafeClKernelHandle kernel, uint workDim, nuint* globalWorkOffset,
        nuint* globalWorkSize, nuint* localWorkSize, uint numEventsInWaitList, nint* eventWaitList, nint* evt);

    private static readonly Lazy<bool> s_libraryAvailable = new(() =>
    {
        if (!NativeLibrary.TryLoad(LibraryName, out var handle)) return false;
        NativeLibrary.Free(handle);
        return true;
    });

    /// <summary>True when the ICD loader can be loaded; checked before the first call so a missing library is "unsupported", not a crash.</summary>
    internal static bool IsLibraryAvailable => s_libraryAvailable.Value;

    /// <summary>Throws <see cref="OpenCLException"/> for a non-zero status.</summary>
    internal static void Check(int status, string call, string? detail = null)
    {
        if (status != OpenCLErrors.Success) throw new OpenCLException(status, call, detail);
    }

    internal static string GetDeviceString(nint device, uint param)
    {
        nuint size;
        Check(clGetDeviceInfo(device, param, 0, null, &size), "clGetDeviceInfo");
        if (size == 0) return "";
        var bytes = new byte[(int)size];
        fixed (byte* p = bytes) Check(clGetDeviceInfo(device, param, size, p, null), "clGetDeviceInfo");
        return System.Text.Encoding.UTF8.GetString(bytes).TrimEnd('\0').Trim();
    }

    internal static string GetPlatformString(nint platform, uint param)
    {
        nuint size;
        Check(clGetPlatformInfo(platform, param, 0, null, &size), "clGetPlatformInfo");
        if (size == 0) return "";
        var bytes = new byte[(int)size];
        fixed (byte* p = bytes) Check(clGetPlatformInfo(platform, param, size, p, null), "clGetPlatformInfo");
        return System.Text.Encoding.UTF8.GetString(bytes).TrimEnd('\0').Trim();
    }

    internal static ulong GetDeviceUInt64(nint device, uint param)
    {
        ulong value;
        Check(clGetDeviceInfo(device, param, sizeof(ulong), &value, null), "clGetDeviceInfo");
        return value;
    }
}

using System.Globalization;
using System.Runtime.InteropServices;
using CheckpointGpu.Devices.Interop;

namespace CheckpointGpu.Devices.OpenCL;

/// <summary>An OpenCL device reached through the system ICD loader (<c>libOpenCL.so.1</c>).</summary>
/// <remarks>
/// <para>One context per accelerator; each <see cref="AcceleratorStream"/> is an in-order command queue whose
/// operations are non-blocking <c>clEnqueue…</c> calls followed by <c>clFlush</c>; completion arrives through
/// <c>clSetEventCallback</c> (no thread waits per operation).</para>
/// <para><see cref="Accelerator.AllocatePinned(long)"/> maps a <c>CL_MEM_ALLOC_HOST_PTR</c> buffer (page-locked on
/// GPU drivers; on PoCL it made no consistent difference, see <c>perf/…/Devices/RESULTS.md</c>), falling back to
/// aligned host memory when the driver refuses.</para>
/// <para>Tested on PoCL 3.1 (CPU device) only. Written against the OpenCL 1.2 API subset (plus
/// <c>clCreateCommandQueueWithProperties</c> when the device reports 2.0+) so vendor GPU drivers should work
/// unchanged, but none was available to run on. Thread-safe.</para>
/// </remarks>
public sealed unsafe partial class OpenCLAccelerator : Accelerator
{
    private readonly SafeClContextHandle _context;
    private readonly nint _device;
    private readonly bool _useQueueProperties;
    private readonly object _utilitySync = new();
    private SafeClCommandQueueHandle? _utilityQueue;

    private OpenCLAccelerator(AcceleratorInfo info, SafeClContextHandle context, nint device, string deviceVersion) : base(info)
    {
        _context = context;
        _device = device;
        _useQueueProperties = ParseMajorVersion(deviceVersion) >= 2;
        // CL_DEVICE_TYPE_CPU = 1 << 1 (Khronos cl.h): the device computes in host memory (PoCL's CPU device).
        _isCpuDevice = (OpenCLNative.GetDeviceUInt64(device, OpenCLNative.CL_DEVICE_TYPE) & 2) != 0;
    }

    private readonly bool _isCpuDevice;

    private protected override bool DeviceMemoryIsHostMemoryCore => _isCpuDevice;

    internal SafeClContextHandle Context => _context;

    internal nint Device => _device;

    /// <summary>Opens an accelerator that shares a context the caller created, so that <c>cl_mem</c> buffers from that context can be wrapped with <see cref="Accelerator.WrapExternal(nint, long, bool)"/>.</summary>
    /// <param name="clContext">The caller's <c>cl_context</c>; this accelerator takes its own reference (<c>clRetainContext</c>), so the caller may release theirs.</param>
    /// <param name="clDeviceId">A <c>cl_device_id</c> in that context; streams become command queues on this device.</param>
    /// <returns>The accelerator; <see cref="AcceleratorInfo.Ordinal"/> is -1 (not from enumeration).</returns>
    /// <exception cref="ArgumentException">A handle is zero.</exception>
    /// <exception cref="NotSupportedException">The OpenCL library cannot be loaded.</exception>
    /// <exception cref="OpenCLException">The driver rejected the handles.</exception>
    public static OpenCLAccelerator CreateFromExistingContext(nint clContext, nint clDeviceId)
    {
        if (clContext == 0) throw new ArgumentException("The cl_context is zero.", nameof(clContext));
        if (clDeviceId == 0) throw new ArgumentException("The cl_device_id is zero.", nameof(clDeviceId));
        if (!OpenCLNative.IsLibraryAvailable) throw new NotSupportedException($"OpenCL is not available: {OpenCLNative.LibraryName} cannot be loaded.");
        var info = Describe(clDeviceId, -1, platformName: "external context", out var deviceVersion);
        OpenCLNative.Check(OpenCLNative.clRetainContext(clContext), "clRetainContext");
        return new OpenCLAccelerator(info, new SafeClContextHandle(clContext, null), clDeviceId, deviceVersion);
    }

    internal static OpenCLAccelerator Create(int ordinal)
    {
        var devices = EnumerateDevices();
        if (devices.Count == 0)
            throw new NotSupportedException(OpenCLNative.IsLibraryAvailable
                ? "OpenCL is not available: no OpenCL platform or device was found (install an ICD, e.g. pocl-opencl-icd)."
                : $"OpenCL is not available: {OpenCLNative.LibraryName} cannot be loaded (install ocl-icd-libopencl1 and an ICD).");
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(ordinal, devices.Count);
        var entry = devices[ordinal];
        var properties = stackalloc nint[] { OpenCLNative.CL_CONTEXT_PLATFORM, entry.Platform, 0 };
        var device = entry.Device;
        int status;
        var context = OpenCLNative.clCreateContext(properties, 1, &device, 0, 0, &status);
        OpenCLNative.Check(status, "clCreateContext");
        return new OpenCLAccelerator(entry.Info, new SafeClContextHandle(context, null), device, entry.DeviceVersion);
    }

    /// <summary>All OpenCL devices of all platforms, in platform order; empty when the loader or an ICD is missing.</summary>
    internal static IReadOnlyList<OpenCLDeviceEntry> EnumerateDevices()
    {
        if (!OpenCLNative.IsLibraryAvailable) return [];
        try
        {
            uint platformCount;
            var status = OpenCLNative.clGetPlatformIDs(0, null, &platformCount);
            if (status != OpenCLErrors.Success || platformCount == 0) return [];
            var platforms = new nint[platformCount];
            fixed (nint* p = platforms) OpenCLNative.Check(OpenCLNative.clGetPlatformIDs(platformCount, p, null), "clGetPlatformIDs");
            var result = new List<OpenCLDeviceEntry>();
            foreach (var platform in platforms)
            {
                uint deviceCount;
                if (OpenCLNative.clGetDeviceIDs(platform, OpenCLNative.CL_DEVICE_TYPE_ALL, 0, null, &deviceCount) != OpenCLErrors.Success || deviceCount == 0)
                    continue;
                var devices = new nint[deviceCount];
                fixed (nint* d = devices)
                    OpenCLNative.Check(OpenCLNative.clGetDeviceIDs(platform, OpenCLNative.CL_DEVICE_TYPE_ALL, deviceCount, d, null), "clGetDeviceIDs");
                var platformName = OpenCLNative.GetPlatformString(platform, OpenCLNative.CL_PLATFORM_NAME);
                foreach (var device in devices)
                {
                    var info = Describe(device, result.Count, platformName, out var deviceVersion);
                    result.Add(new OpenCLDeviceEntry(platform, device, info, deviceVersion));
                }
            }
            return result;
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException or OpenCLException)
        {
            return [];
        }
    }

    private static AcceleratorInfo Describe(nint device, int ordinal, string platformName, out string deviceVersion)
    {
        deviceVersion = OpenCLNative.GetDeviceString(device, OpenCLNative.CL_DEVICE_VERSION);
        var name = OpenCLNative.GetDeviceString(device, OpenCLNative.CL_DEVICE_NAME);
        var vendor = OpenCLNative.GetDeviceString(device, OpenCLNative.CL_DEVICE_VENDOR);
        var driver = OpenCLNative.GetDeviceString(device, OpenCLNative.CL_DRIVER_VERSION);
        var memory = (long)Math.Min(OpenCLNative.GetDeviceUInt64(device, OpenCLNative.CL_DEVICE_GLOBAL_MEM_SIZE), long.MaxValue);
        var maxAlloc = (long)Math.Min(OpenCLNative.GetDeviceUInt64(device, OpenCLNative.CL_DEVICE_MAX_MEM_ALLOC_SIZE), long.MaxValue);
        return new AcceleratorInfo(AcceleratorKind.OpenCL, ordinal, name, memory, maxAlloc, vendor, $"{platformName}; {deviceVersion}; driver {driver}");
    }

    private static int ParseMajorVersion(string deviceVersion)
    {
        // "OpenCL <major>.<minor> <vendor-specific>"
        var parts = deviceVersion.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length >= 2)
        {
            var dot = parts[1].IndexOf('.', StringComparison.Ordinal);
            if (dot > 0 && int.TryParse(parts[1].AsSpan(0, dot), NumberStyles.Integer, CultureInfo.InvariantCulture, out var major)) return major;
        }
        return 1;
    }

    internal SafeClCommandQueueHandle CreateQueue()
    {
        int status;
        nint queue;
        if (_useQueueProperties)
        {
            queue = OpenCLNative.clCreateCommandQueueWithProperties(_context, _device, null, &status);
            if (status == OpenCLErrors.Success) return new SafeClCommandQueueHandle(queue, _context);
        }
        // OpenCL 1.x devices (and 2.x loaders that lack the entry for this ICD): the deprecated call.
        queue = OpenCLNative.clCreateCommandQueue(_context, _device, 0, &status);
        OpenCLNative.Check(status, "clCreateCommandQueue");
        return new SafeClCommandQueueHandle(queue, _context);
    }

    private SafeClCommandQueueHandle UtilityQueue
    {
        get
        {
            lock (_utilitySync) return _utilityQueue ??= CreateQueue();
        }
    }

    private protected override DeviceBuffer AllocateInternal(long lengthInBytes)
    {
        var mem = CreateBuffer(OpenCLNative.CL_MEM_READ_WRITE, Math.Max(1, lengthInBytes), lengthInBytes);
        return new DeviceBuffer(this, mem, lengthInBytes, isExternal: false, ownsMemory: true);
    }

    private SafeClMemHandle CreateBuffer(ulong flags, long sizeInBytes, long requestedBytes)
    {
        int status;
        var mem = OpenCLNative.clCreateBuffer(_context, flags, (nuint)sizeInBytes, null, &status);
        if (OpenCLErrors.IsOutOfMemory(status) || status == OpenCLErrors.InvalidBufferSize)
            throw new AcceleratorOutOfMemoryException(Kind, requestedBytes, MemorySizeInBytes, MaxAllocationSizeInBytes, status, OpenCLErrors.GetName(status), "clCreateBuffer");
        OpenCLNative.Check(status, "clCreateBuffer");
        return new SafeClMemHandle(mem, _context);
    }

    private protected override DeviceBuffer WrapExternalInternal(nint nativeHandle, long lengthInBytes, bool ownsMemory)
    {
        nint memContext;
        OpenCLNative.Check(OpenCLNative.clGetMemObjectInfo(nativeHandle, OpenCLNative.CL_MEM_CONTEXT, (nuint)sizeof(nint), &memContext, null), "clGetMemObjectInfo");
        if (memContext != _context.DangerousGetHandle())
            throw new ArgumentException("The cl_mem belongs to a different cl_context; open the accelerator with OpenCLAccelerator.CreateFromExistingContext to share the caller's context.", nameof(nativeHandle));
        nuint size;
        OpenCLNative.Check(OpenCLNative.clGetMemObjectInfo(nativeHandle, OpenCLNative.CL_MEM_SIZE, (nuint)sizeof(nuint), &size, null), "clGetMemObjectInfo");
        if ((ulong)lengthInBytes > size)
            throw new ArgumentException($"The cl_mem is {size} bytes long, shorter than the requested {lengthInBytes} bytes.", nameof(nativeHandle));
        if (!ownsMemory) OpenCLNative.Check(OpenCLNative.clRetainMemObject(nativeHandle), "clRetainMemObject");
        return new DeviceBuffer(this, new SafeClMemHandle(nativeHandle, _context), lengthInBytes, isExternal: true, ownsMemory);
    }

    private protected override PinnedHostBuffer AllocatePinnedInternal(long lengthInBytes)
    {
        const int Align = PinnedHostBuffer.AlignmentInBytes;
        var rounded = (Math.Max(1, lengthInBytes) + Align - 1) / Align * Align;
        // Try the exact size first; if the driver's mapping is not 4096-aligned, over-allocate one page and align inside.
        foreach (var slack in new long[] { 0, Align })
        {
            var size = rounded + slack;
            if (size > MaxAllocationSizeInBytes) break;
            SafeClMemHandle mem;
            try
            {
                mem = CreateBuffer(OpenCLNative.CL_MEM_READ_WRITE | OpenCLNative.CL_MEM_ALLOC_HOST_PTR, size, lengthInBytes);
            }
            catch (AcceleratorOutOfMemoryException)
            {
                break;
            }
            int status;
            var mapped = (nint)OpenCLNative.clEnqueueMapBuffer(UtilityQueue, mem, 1, OpenCLNative.CL_MAP_READ | OpenCLNative.CL_MAP_WRITE, 0, (nuint)size, 0, null, null, &status);
            if (status != OpenCLErrors.Success || mapped == 0)
            {
                mem.Dispose();
                break;
            }
            var aligned = (mapped + (Align - 1)) & ~(nint)(Align - 1);
            var handle = new SafeClMappedHostHandle(mem, UtilityQueue, mapped, aligned);
            if (aligned + (nint)rounded <= mapped + (nint)size)
            {
                // Huge pages where the driver's host memory is ordinary anonymous memory not yet touched (PoCL); a
                // driver's own pinned mapping refuses the advice, harmlessly. Then pre-fault every page.
                Interop.LibC.TryAdviseHugePages((void*)aligned, (nuint)rounded);
                NativeMemory.Clear((void*)aligned, (nuint)rounded);
                return new PinnedHostBuffer(this, handle, aligned, lengthInBytes, isPageLocked: true);
            }
            handle.Dispose();
        }
        // Fallback: ordinary aligned, pre-faulted host memory (mlock where the limit allows).
        var host = SafeAlignedMemoryHandle.TryAllocate(lengthInBytes, Align, pageLockAndPrefault: true)
            ?? throw new AcceleratorOutOfMemoryException(Kind, lengthInBytes, MemorySizeInBytes, MaxAllocationSizeInBytes, 12, "ENOMEM", "aligned_alloc");
        return new PinnedHostBuffer(this, host, host.DangerousGetHandle(), lengthInBytes, host.IsPageLocked);
    }

    private protected override AcceleratorStream CreateStreamInternal() => new OpenCLStream(this, CreateQueue());

    private protected override void DisposeInternal()
    {
        lock (_utilitySync)
        {
            _utilityQueue?.Dispose();
            _utilityQueue = null;
        }
        DisposeKernels();
        _context.Dispose();
    }
}

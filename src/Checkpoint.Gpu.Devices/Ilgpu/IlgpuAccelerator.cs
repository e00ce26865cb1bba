using CheckpointGpu.Devices.Interop;
using ILGPU;
using ILGPU.Runtime;

namespace CheckpointGpu.Devices.Ilgpu;

/// <summary>An <see cref="Devices.Accelerator"/> over any ILGPU 1.5.3 accelerator: CPU (<see cref="AcceleratorKind.IlgpuCpu"/>), CUDA (<see cref="AcceleratorKind.Cuda"/>) or OpenCL 2.0+ (<see cref="AcceleratorKind.IlgpuOpenCL"/>).</summary>
/// <remarks>
/// <para>Device buffers are ILGPU <c>MemoryBuffer1D&lt;byte, Stride1D.Dense&gt;</c> (or, for buffers a user brought with
/// <see cref="Wrap{T}(MemoryBuffer1D{T, Stride1D.Dense})"/>, the user's typed buffer seen as bytes); streams are ILGPU
/// streams completed by one dedicated thread each (see the Devices README, "ILGPU"); pinned host memory is a
/// 4096-aligned, pre-faulted block registered with <c>CreatePageLockFromPinned</c>, so on CUDA the staging ring's
/// copies are asynchronous DMA.</para>
/// <para>Open one with <see cref="Devices.Accelerator.Create(AcceleratorKind, int)"/> (owns its ILGPU context and
/// accelerator) or over a user's own ILGPU accelerator with <see cref="FromExisting"/> (ownership as requested).</para>
/// <para>Thread-safety: all members are thread-safe.</para>
/// </remarks>
public sealed class IlgpuAccelerator : Devices.Accelerator
{
    private readonly Context? _ownedContext;
    private readonly bool _ownsDevice;

    private IlgpuAccelerator(AcceleratorInfo info, ILGPU.Runtime.Accelerator device, Context? ownedContext, bool ownsDevice)
        : base(info)
    {
        Device = device;
        _ownedContext = ownedContext;
        _ownsDevice = ownsDevice;
    }

    /// <summary>The ILGPU accelerator (for the caller's own kernels; do not dispose it when this instance owns it).</summary>
    public ILGPU.Runtime.Accelerator Device { get; }

    /// <summary>The ILGPU context of <see cref="Device"/>.</summary>
    public Context Context => Device.Context;

    internal static IlgpuAccelerator Open(AcceleratorKind kind, int ordinal)
    {
        var probe = IlgpuRuntime.Get(kind);
        if (probe.Devices.Count == 0) throw new NotSupportedException($"{kind} is not available: {probe.UnsupportedReason}.");
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(ordinal, probe.Devices.Count);
        var context = IlgpuRuntime.CreateContext(kind);
        try
        {
            var devices = IlgpuRuntime.UsableDevices(context, kind);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(ordinal, devices.Count);
            var device = devices[ordinal].CreateAccelerator(context);
            return new IlgpuAccelerator(IlgpuRuntime.Describe(kind, ordinal, devices[ordinal]), device, context, ownsDevice: true);
        }
        catch (ILGPU.Runtime.AcceleratorException ex)
        {
            context.Dispose();
            throw new IlgpuException(kind, "CreateAccelerator", ex);
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>Opens this engine's accelerator over an ILGPU accelerator the caller already has ("bring your own ILGPU").</summary>
    /// <param name="device">The caller's ILGPU accelerator: CPU, CUDA or OpenCL.</param>
    /// <param name="ownsDevice"><see langword="false"/> (default): the caller keeps disposing <paramref name="device"/> (after this instance); <see langword="true"/>: disposed with this instance.</param>
    /// <returns>The accelerator; <see cref="Devices.Accelerator.Info"/>'s ordinal is -1.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="device"/> is null.</exception>
    /// <exception cref="NotSupportedException"><paramref name="device"/> is of an ILGPU type this backend does not map (e.g. Velocity).</exception>
    public static IlgpuAccelerator FromExisting(ILGPU.Runtime.Accelerator device, bool ownsDevice = false)
    {
        ArgumentNullException.ThrowIfNull(device);
        IlgpuRuntime.EnsureNativeResolver();
        var kind = device.AcceleratorType switch
        {
            AcceleratorType.CPU => AcceleratorKind.IlgpuCpu,
            AcceleratorType.Cuda => AcceleratorKind.Cuda,
            AcceleratorType.OpenCL => AcceleratorKind.IlgpuOpenCL,
            var other => throw new NotSupportedException($"ILGPU accelerators of type {other} are not supported; use CPU, Cuda or OpenCL."),
        };
        var memory = device.MemorySize is > 0 and < long.MaxValue ? device.MemorySize : GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        var info = new AcceleratorInfo(kind, -1, device.Name, memory, memory, device.AcceleratorType.ToString(),
            $"ILGPU {typeof(Context).Assembly.GetName().Version} (caller's accelerator)");
        return new IlgpuAccelerator(info, device, ownedContext: null, ownsDevice);
    }

    /// <summary>Makes a user's ILGPU buffer usable as a <see cref="DeviceBuffer"/> without copying (dtype-agnostic: its bytes).</summary>
    /// <typeparam name="T">The element type; the device buffer is <c>Length × sizeof(T)</c> bytes.</typeparam>
    /// <param name="buffer">A buffer of <see cref="Device"/>. Ownership stays with the caller: disposing the returned buffer never disposes it; keep it alive until the returned buffer is disposed and its operations completed.</param>
    /// <returns>A buffer with <see cref="DeviceBuffer.IsExternal"/> true and <see cref="DeviceBuffer.OwnsMemory"/> false.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="buffer"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="buffer"/> belongs to another ILGPU accelerator.</exception>
    /// <exception cref="ObjectDisposedException">This accelerator or <paramref name="buffer"/> is disposed.</exception>
    public DeviceBuffer Wrap<T>(MemoryBuffer1D<T, Stride1D.Dense> buffer) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(buffer);
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ObjectDisposedException.ThrowIf(buffer.IsDisposed, buffer);
        if (!ReferenceEquals(buffer.Accelerator, Device))
            throw new ArgumentException($"The ILGPU buffer belongs to accelerator '{buffer.Accelerator.Name}', not to '{Device.Name}' of this {Kind} accelerator.", nameof(buffer));
        var raw = buffer.View.AsContiguous().Cast<byte>();
        return RegisterExternal(new DeviceBuffer(this, new SafeIlgpuBufferHandle(buffer, raw, ownsBuffer: false), raw.Length, isExternal: true, ownsMemory: false));
    }

    /// <summary>The bytes of <paramref name="view"/> as an ILGPU view of <typeparamref name="T"/> (for the caller's kernels).</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="view">A view of a buffer of this accelerator; its offset and length must be multiples of <c>sizeof(T)</c>.</param>
    /// <returns>The ILGPU view; valid while the buffer is not disposed.</returns>
    /// <exception cref="ArgumentException"><paramref name="view"/> is default, belongs to another accelerator, or is not aligned to <c>sizeof(T)</c>.</exception>
    /// <exception cref="ObjectDisposedException">The buffer is disposed.</exception>
    public unsafe ArrayView<T> GetView<T>(DeviceView view) where T : unmanaged
    {
        var buffer = view.Buffer ?? throw new ArgumentException("The view is default(DeviceView): it has no buffer.", nameof(view));
        if (!ReferenceEquals(buffer.Accelerator, this)) throw new ArgumentException("The view belongs to another accelerator.", nameof(view));
        ObjectDisposedException.ThrowIf(buffer.IsDisposed, buffer);
        if (view.OffsetInBytes % sizeof(T) != 0 || view.LengthInBytes % sizeof(T) != 0)
            throw new ArgumentException($"The view [{view.OffsetInBytes}, +{view.LengthInBytes}) bytes is not aligned to {sizeof(T)}-byte elements.", nameof(view));
        return ((SafeIlgpuBufferHandle)buffer.Handle).RawView.SubView(view.OffsetInBytes, view.LengthInBytes).Cast<T>();
    }

    /// <summary>Queues an ILGPU operation (typically a kernel launch) on <paramref name="stream"/>, ordered with its copies.</summary>
    /// <param name="stream">A stream of this accelerator.</param>
    /// <param name="keepAlive">Buffers the operation touches: kept alive until it completes.</param>
    /// <param name="issue">Issues the operation on the ILGPU stream it is given; runs on the stream's thread.</param>
    /// <returns>The completion of the operation.</returns>
    /// <exception cref="ArgumentException"><paramref name="stream"/> belongs to another accelerator.</exception>
    /// <exception cref="ObjectDisposedException">The stream, this accelerator or a buffer is disposed.</exception>
    public DeviceEvent Enqueue(Devices.AcceleratorStream stream, ReadOnlySpan<DeviceBuffer> keepAlive, Action<ILGPU.Runtime.AcceleratorStream> issue)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(issue);
        if (stream is not IlgpuStream ilgpuStream || !ReferenceEquals(stream.Accelerator, this))
            throw new ArgumentException("The stream belongs to another accelerator.", nameof(stream));
        var resources = new OperationResources(null, null);
        try
        {
            foreach (var buffer in keepAlive) resources.AddHandle(buffer.Handle);
        }
        catch
        {
            resources.Release();
            throw;
        }
        return stream.EnqueueBackendOperation(resources, e => ilgpuStream.EnqueueCustomInternal(issue, e));
    }

    private protected override bool DeviceMemoryIsHostMemoryCore => Device.AcceleratorType == AcceleratorType.CPU;

    private protected override DeviceBuffer AllocateInternal(long lengthInBytes)
    {
        MemoryBuffer1D<byte, Stride1D.Dense> buffer;
        try
        {
            buffer = Device.Allocate1D<byte>(lengthInBytes);
        }
        catch (Exception ex) when (ex is OutOfMemoryException || (ex is ILGPU.Runtime.AcceleratorException && ex.Message.Contains("OUT_OF_MEMORY", StringComparison.OrdinalIgnoreCase)))
        {
            throw new AcceleratorOutOfMemoryException(Kind, lengthInBytes, MemorySizeInBytes, MaxAllocationSizeInBytes, 0, ex.GetType().Name, "Allocate1D", ex);
        }
        catch (ILGPU.Runtime.AcceleratorException ex)
        {
            throw new IlgpuException(Kind, "Allocate1D", ex);
        }
        var handle = new SafeIlgpuBufferHandle(buffer, buffer.View.AsContiguous(), ownsBuffer: true);
        // ILGPU's CPU accelerator allocates host memory: huge pages where the kernel allows, before its first touch (see
        // LibC.TryAdviseHugePages; ILGPU does not align it, so only the whole 2 MiB pages inside are advised).
        if (DeviceMemoryIsHostMemoryCore)
            unsafe { Interop.LibC.TryAdviseHugePages((void*)handle.HostAddress, (nuint)lengthInBytes); }
        return new DeviceBuffer(this, handle, lengthInBytes, isExternal: false, ownsMemory: true);
    }

    private protected override DeviceBuffer WrapExternalInternal(nint nativeHandle, long lengthInBytes, bool ownsMemory) =>
        throw new NotSupportedException($"{Kind}: raw native handles cannot be wrapped; pass the ILGPU buffer to IlgpuAccelerator.Wrap(MemoryBuffer1D<T, Stride1D.Dense>).");

    private protected override PinnedHostBuffer AllocatePinnedInternal(long lengthInBytes)
    {
        var memory = SafeAlignedMemoryHandle.TryAllocate(lengthInBytes, PinnedHostBuffer.AlignmentInBytes, pageLockAndPrefault: true)
            ?? throw new AcceleratorOutOfMemoryException(Kind, lengthInBytes, MemorySizeInBytes, MaxAllocationSizeInBytes, 12, "ENOMEM", "aligned_alloc");
        PageLockScope<byte>? scope = null;
        try
        {
            // CUDA: cuMemHostRegister, so copies from/to this block are DMA; CPU: a no-op scope.
            if (Device.AcceleratorType != AcceleratorType.CPU && lengthInBytes > 0)
                scope = Device.CreatePageLockFromPinned<byte>(memory.DangerousGetHandle(), lengthInBytes);
        }
        catch (Exception ex) when (ex is ILGPU.Runtime.AcceleratorException or NotSupportedException)
        {
            scope = null; // not registrable: ordinary (pre-faulted, maybe mlocked) host memory still works
        }
        var handle = new SafeIlgpuPageLockedHandle(memory, scope);
        return new PinnedHostBuffer(this, handle, handle.DangerousGetHandle(), lengthInBytes, scope is not null || memory.IsPageLocked);
    }

    private protected override Devices.AcceleratorStream CreateStreamInternal() => new IlgpuStream(this);

    private protected override void DisposeInternal()
    {
        if (_ownsDevice) Device.Dispose();
        _ownedContext?.Dispose();
    }
}

using CheckpointGpu.Devices.Cpu;
using CheckpointGpu.Devices.Ilgpu;
using CheckpointGpu.Devices.OpenCL;

namespace CheckpointGpu.Devices;

/// <summary>A compute device with its own memory: allocates <see cref="DeviceBuffer"/>s and <see cref="PinnedHostBuffer"/>s and creates <see cref="AcceleratorStream"/>s.</summary>
/// <remarks>
/// <para>Open one with <see cref="Create(AcceleratorKind, int)"/>; list devices with <see cref="Enumerate(AcceleratorKind)"/>.
/// Backends: <see cref="AcceleratorKind.Cpu"/> (always available), <see cref="AcceleratorKind.OpenCL"/>
/// (system <c>libOpenCL.so.1</c>; run here on PoCL only), and through ILGPU 1.5.3 (<see cref="IlgpuAccelerator"/>)
/// <see cref="AcceleratorKind.IlgpuCpu"/> (always available), <see cref="AcceleratorKind.Cuda"/> (when ILGPU finds a
/// CUDA device) and <see cref="AcceleratorKind.IlgpuOpenCL"/> (OpenCL 2.0+ devices with the generic address space).
/// Native libraries are loaded lazily; a missing library means "not supported", never a crash;
/// <see cref="GetUnsupportedReason(AcceleratorKind)"/> says why a kind is not supported.</para>
/// <para>Lifetime (parent-owned, STYLE B4): <see cref="Dispose"/> first waits for every stream to drain, then frees
/// buffers and pinned buffers the user did not dispose, then destroys the streams, then the device context.
/// <see cref="DisposeAsync"/> drains without blocking a thread.</para>
/// <para>Thread-safety: all members are thread-safe.</para>
/// </remarks>
public abstract partial class Accelerator : IDisposable, IAsyncDisposable
{
    private readonly object _sync = new();
    private readonly HashSet<IAcceleratorChild> _children = [];
    private readonly List<AcceleratorStream> _streams = [];
    private AcceleratorStream? _defaultStream;
    private int _disposed;

    private protected Accelerator(AcceleratorInfo info)
    {
        Info = info;
    }

    /// <summary>The device description.</summary>
    public AcceleratorInfo Info { get; }

    /// <summary>The backend.</summary>
    public AcceleratorKind Kind => Info.Kind;

    /// <summary>Device name as reported by the driver.</summary>
    public string Name => Info.Name;

    /// <summary>Total device memory, in bytes.</summary>
    public long MemorySizeInBytes => Info.MemorySizeInBytes;

    /// <summary>Largest single allocation, in bytes; larger requests throw <see cref="AcceleratorOutOfMemoryException"/>.</summary>
    public long MaxAllocationSizeInBytes => Info.MaxAllocationSizeInBytes;

    /// <summary>True once disposal has started.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>
    /// True when this device's memory is the host's own memory: the native CPU accelerator, ILGPU's CPU accelerator, and an
    /// OpenCL device of type <c>CL_DEVICE_TYPE_CPU</c> (PoCL). Allocating device memory then costs host memory and fresh
    /// host pages (slow to touch on some VMs), which is why the restore engine keeps such a scratch buffer between restores.
    /// Unlike <see cref="DeviceBuffer.IsHostMemory"/>, it does not promise that buffers can be addressed from the host.
    /// </summary>
    public bool DeviceMemoryIsHostMemory => DeviceMemoryIsHostMemoryCore;

    /// <summary>See <see cref="DeviceMemoryIsHostMemory"/>; false unless a backend knows better.</summary>
    private protected virtual bool DeviceMemoryIsHostMemoryCore => false;

    /// <summary>A stream created on first use and owned by the accelerator (do not dispose it).</summary>
    /// <exception cref="ObjectDisposedException">The accelerator is disposed.</exception>
    public AcceleratorStream DefaultStream
    {
        get
        {
            lock (_sync)
            {
                ObjectDisposedException.ThrowIf(IsDisposed, this);
                if (_defaultStream is null)
                {
                    _defaultStream = CreateStreamInternal();
                    _streams.Add(_defaultStream);
                }
                return _defaultStream;
            }
        }
    }

    // ---------------------------------------------------------------- discovery and factory

    /// <summary>True when at least one device of <paramref name="kind"/> can be opened: the backend is implemented, its native library loads and reports a device.</summary>
    /// <param name="kind">The backend.</param>
    /// <returns>Whether <see cref="Create(AcceleratorKind, int)"/> can succeed for ordinal 0.</returns>
    public static bool IsSupported(AcceleratorKind kind) => kind switch
    {
        AcceleratorKind.Cpu => true,
        AcceleratorKind.OpenCL => OpenCLAccelerator.EnumerateDevices().Count > 0,
        AcceleratorKind.IlgpuCpu or AcceleratorKind.Cuda or AcceleratorKind.IlgpuOpenCL => IlgpuRuntime.Get(kind).Devices.Count > 0,
        _ => false,
    };

    /// <summary>Why <paramref name="kind"/> is not supported (e.g. ILGPU's refusal of PoCL, or no CUDA device), or <see langword="null"/> when it is.</summary>
    /// <param name="kind">The backend.</param>
    /// <returns>A sentence naming the cause, or <see langword="null"/>.</returns>
    public static string? GetUnsupportedReason(AcceleratorKind kind) => kind switch
    {
        AcceleratorKind.Cpu => null,
        AcceleratorKind.OpenCL => IsSupported(kind) ? null : "no OpenCL platform/device found (libOpenCL.so.1 and an ICD such as pocl-opencl-icd are needed)",
        AcceleratorKind.IlgpuCpu or AcceleratorKind.Cuda or AcceleratorKind.IlgpuOpenCL => IlgpuRuntime.Get(kind).UnsupportedReason,
        _ => $"unknown accelerator kind {(int)kind}",
    };

    /// <summary>The devices of <paramref name="kind"/>; empty when the backend or its native library is missing.</summary>
    /// <param name="kind">The backend.</param>
    /// <returns>Device descriptions, ordered by <see cref="AcceleratorInfo.Ordinal"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="kind"/> is not a defined value.</exception>
    public static IReadOnlyList<AcceleratorInfo> Enumerate(AcceleratorKind kind) => kind switch
    {
        AcceleratorKind.Cpu => [CpuAccelerator.Describe()],
        AcceleratorKind.OpenCL => OpenCLAccelerator.EnumerateDevices().Select(d => d.Info).ToArray(),
        AcceleratorKind.IlgpuCpu or AcceleratorKind.Cuda or AcceleratorKind.IlgpuOpenCL => IlgpuRuntime.Get(kind).Devices,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown accelerator kind."),
    };

    /// <summary>Opens device <paramref name="ordinal"/> of <paramref name="kind"/>.</summary>
    /// <param name="kind">The backend.</param>
    /// <param name="ordinal">0-based index into <see cref="Enumerate(AcceleratorKind)"/>.</param>
    /// <returns>The accelerator; the caller disposes it.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="ordinal"/> is negative or not below the device count, or <paramref name="kind"/> is undefined.</exception>
    /// <exception cref="NotSupportedException">The backend is not available (no native library, no device, or ILGPU refuses the device); the message gives <see cref="GetUnsupportedReason(AcceleratorKind)"/>.</exception>
    /// <exception cref="AcceleratorException">The driver failed to create the context.</exception>
    public static Accelerator Create(AcceleratorKind kind, int ordinal = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(ordinal);
        switch (kind)
        {
            case AcceleratorKind.Cpu:
                ArgumentOutOfRangeException.ThrowIfNotEqual(ordinal, 0);
                return new CpuAccelerator();
            case AcceleratorKind.OpenCL:
                return OpenCLAccelerator.Create(ordinal);
            case AcceleratorKind.IlgpuCpu:
            case AcceleratorKind.Cuda:
            case AcceleratorKind.IlgpuOpenCL:
                return IlgpuAccelerator.Open(kind, ordinal);
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown accelerator kind.");
        }
    }

    // ---------------------------------------------------------------- allocation

    /// <summary>Allocates <paramref name="lengthInBytes"/> bytes of device memory (not zeroed).</summary>
    /// <param name="lengthInBytes">Size in bytes; 0 gives an empty buffer.</param>
    /// <returns>The buffer; dispose it, or it is freed with the accelerator.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="lengthInBytes"/> is negative.</exception>
    /// <exception cref="ObjectDisposedException">The accelerator is disposed.</exception>
    /// <exception cref="AcceleratorOutOfMemoryException">The size exceeds <see cref="MaxAllocationSizeInBytes"/> or the device is out of memory.</exception>
    /// <exception cref="AcceleratorException">The driver failed otherwise.</exception>
    public DeviceBuffer Allocate(long lengthInBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(lengthInBytes);
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (lengthInBytes > MaxAllocationSizeInBytes)
            throw new AcceleratorOutOfMemoryException(Kind, lengthInBytes, MemorySizeInBytes, MaxAllocationSizeInBytes);
        return Register(AllocateInternal(lengthInBytes));
    }

    /// <summary>Wraps device memory that the caller already owns ("bring your own memory"), without copying.</summary>
    /// <param name="nativeHandle">
    /// The backend's memory handle. CPU: the address of <paramref name="lengthInBytes"/> readable and writable bytes.
    /// OpenCL: a <c>cl_mem</c> buffer created in this accelerator's context (see
    /// <see cref="OpenCLAccelerator.CreateFromExistingContext(nint, nint)"/> to share the caller's context), at least
    /// <paramref name="lengthInBytes"/> long. ILGPU kinds (including CUDA): not supported, see <see cref="IlgpuAccelerator.Wrap{T}(ILGPU.Runtime.MemoryBuffer1D{T, ILGPU.Stride1D.Dense})"/>.
    /// </param>
    /// <param name="lengthInBytes">Size in bytes that the buffer exposes.</param>
    /// <param name="ownsMemory">
    /// <see langword="false"/>: the caller keeps ownership; CPU memory must stay valid until the buffer is disposed
    /// and all its operations completed; for OpenCL the buffer takes its own reference (<c>clRetainMemObject</c>).
    /// <see langword="true"/>: ownership passes to the buffer; CPU memory is released with
    /// <see cref="System.Runtime.InteropServices.NativeMemory.AlignedFree(void*)"/> (so it must come from
    /// <c>NativeMemory.AlignedAlloc</c>); an OpenCL <c>cl_mem</c> reference is released with <c>clReleaseMemObject</c>.
    /// </param>
    /// <returns>A buffer like any other (views, streams); <see cref="DeviceBuffer.IsExternal"/> is true.</returns>
    /// <exception cref="ArgumentException"><paramref name="nativeHandle"/> is zero, or (OpenCL) belongs to another context or is smaller than <paramref name="lengthInBytes"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="lengthInBytes"/> is negative.</exception>
    /// <exception cref="ObjectDisposedException">The accelerator is disposed.</exception>
    /// <exception cref="AcceleratorException">The driver rejected the handle.</exception>
    /// <exception cref="NotSupportedException">The backend is an ILGPU one: wrap ILGPU buffers with <see cref="IlgpuAccelerator.Wrap{T}(ILGPU.Runtime.MemoryBuffer1D{T, ILGPU.Stride1D.Dense})"/> instead.</exception>
    public DeviceBuffer WrapExternal(nint nativeHandle, long lengthInBytes, bool ownsMemory)
    {
        if (nativeHandle == 0) throw new ArgumentException("The native memory handle is zero.", nameof(nativeHandle));
        ArgumentOutOfRangeException.ThrowIfNegative(lengthInBytes);
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        return Register(WrapExternalInternal(nativeHandle, lengthInBytes, ownsMemory));
    }

    /// <summary>Allocates host memory for fast transfers: 4096-byte aligned, pre-faulted, page-locked where possible.</summary>
    /// <param name="lengthInBytes">Size in bytes; 0 gives an empty buffer.</param>
    /// <returns>The buffer; dispose it, or it is freed with the accelerator.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="lengthInBytes"/> is negative.</exception>
    /// <exception cref="ObjectDisposedException">The accelerator is disposed.</exception>
    /// <exception cref="AcceleratorOutOfMemoryException">The host cannot provide the memory.</exception>
    public PinnedHostBuffer AllocatePinned(long lengthInBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(lengthInBytes);
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        var buffer = AllocatePinnedInternal(lengthInBytes);
        lock (_sync)
        {
            if (!IsDisposed) { _children.Add(buffer); return buffer; }
        }
        ((IAcceleratorChild)buffer).DisposeFromParent();
        throw new ObjectDisposedException(GetType().Name);
    }

    /// <summary>Creates a new ordered stream. Streams run concurrently with each other.</summary>
    /// <returns>The stream; dispose it, or it is disposed with the accelerator.</returns>
    /// <exception cref="ObjectDisposedException">The accelerator is disposed.</exception>
    /// <exception cref="AcceleratorException">The driver failed to create a queue.</exception>
    public AcceleratorStream CreateStream()
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            var stream = CreateStreamInternal();
            _streams.Add(stream);
            return stream;
        }
    }

    /// <summary>Blocks until every stream of this accelerator is idle. Explicitly synchronous: never call from async code.</summary>
    /// <exception cref="ObjectDisposedException">The accelerator is disposed.</exception>
    /// <exception cref="AcceleratorException">An operation on some stream failed since its last synchronization.</exception>
    public void Synchronize()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        foreach (var stream in SnapshotStreams()) stream.Synchronize();
    }

    /// <summary>Waits, without blocking a thread, until everything enqueued so far on every stream has completed.</summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>A task completing when all streams drained up to this point.</returns>
    /// <exception cref="ObjectDisposedException">The accelerator is disposed.</exception>
    /// <exception cref="OperationCanceledException">The wait was cancelled.</exception>
    /// <exception cref="AcceleratorException">An operation on some stream failed since its last synchronization.</exception>
    public async ValueTask SynchronizeAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        foreach (var stream in SnapshotStreams())
            await stream.SynchronizeAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Drains all streams (blocking), then frees remaining buffers, streams and the device context.</summary>
    /// <exception cref="InvalidOperationException">A use lease is held (<see cref="AcquireUseLease"/>): nothing is freed.</exception>
    public void Dispose()
    {
        ThrowIfLeased();
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        var streams = SnapshotStreams();
        foreach (var stream in streams) stream.WaitIdle();
        ReleaseChildrenAndContext(streams);
        GC.SuppressFinalize(this);
    }

    /// <summary>Drains all streams without blocking a thread, then frees remaining buffers, streams and the device context.</summary>
    /// <returns>A task completing when everything is released.</returns>
    /// <exception cref="InvalidOperationException">A use lease is held (<see cref="AcquireUseLease"/>): nothing is freed.</exception>
    public async ValueTask DisposeAsync()
    {
        ThrowIfLeased();
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        var streams = SnapshotStreams();
        foreach (var stream in streams)
        {
            if (stream.PendingOperationCount == 0) continue;
            try
            {
                await stream.RecordUnchecked().Completion.ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is AcceleratorException or ObjectDisposedException or OperationCanceledException)
            {
                // Failures were already reported on their events; disposal continues.
            }
        }
        ReleaseChildrenAndContext(streams);
        GC.SuppressFinalize(this);
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Kind} accelerator '{Name}' ({MemorySizeInBytes} bytes)";

    // ---------------------------------------------------------------- backend seam

    /// <summary>Allocates device memory; <paramref name="lengthInBytes"/> is validated (0 ≤ length ≤ max allocation).</summary>
    private protected abstract DeviceBuffer AllocateInternal(long lengthInBytes);

    /// <summary>Wraps caller memory; arguments validated.</summary>
    private protected abstract DeviceBuffer WrapExternalInternal(nint nativeHandle, long lengthInBytes, bool ownsMemory);

    /// <summary>Allocates pinned host memory; length validated.</summary>
    private protected abstract PinnedHostBuffer AllocatePinnedInternal(long lengthInBytes);

    /// <summary>Creates a backend stream.</summary>
    private protected abstract AcceleratorStream CreateStreamInternal();

    /// <summary>Destroys the device context; called last, once, after every child was released.</summary>
    private protected abstract void DisposeInternal();

    // ---------------------------------------------------------------- children

    private protected DeviceBuffer RegisterExternal(DeviceBuffer buffer) => Register(buffer);

    private DeviceBuffer Register(DeviceBuffer buffer)
    {
        lock (_sync)
        {
            if (!IsDisposed) { _children.Add(buffer); return buffer; }
        }
        ((IAcceleratorChild)buffer).DisposeFromParent();
        throw new ObjectDisposedException(GetType().Name);
    }

    internal void Unregister(IAcceleratorChild child)
    {
        lock (_sync) _children.Remove(child);
    }

    internal void Unregister(AcceleratorStream stream)
    {
        lock (_sync)
        {
            _streams.Remove(stream);
            if (ReferenceEquals(stream, _defaultStream)) _defaultStream = null;
        }
    }

    private AcceleratorStream[] SnapshotStreams()
    {
        lock (_sync) return [.. _streams];
    }

    private void ReleaseChildrenAndContext(AcceleratorStream[] streams)
    {
        IAcceleratorChild[] children;
        lock (_sync)
        {
            children = [.. _children];
            _children.Clear();
            _streams.Clear();
            _defaultStream = null;
        }
        foreach (var child in children) child.DisposeFromParent();
        foreach (var stream in streams) stream.DisposeFromParent();
        DisposeInternal();
    }
}

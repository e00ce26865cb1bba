using System.Buffers;
using System.Runtime.InteropServices;

namespace CheckpointGpu.Devices;

/// <summary>
/// Keeps the native memory an enqueued operation touches alive until the operation completes: one
/// <see cref="SafeHandle.DangerousAddRef(ref bool)"/> per handle, plus an optional pin of caller memory.
/// Released exactly once by <see cref="DeviceEvent"/> on completion.
/// </summary>
internal sealed class OperationResources
{
    private SafeHandle? _first;
    private SafeHandle? _second;
    private List<SafeHandle>? _more;
    private MemoryHandle _pin;
    private bool _hasPin;

    /// <summary>AddRefs both handles; throws <see cref="ObjectDisposedException"/> (and holds nothing) if either is already closed.</summary>
    internal OperationResources(SafeHandle? first, SafeHandle? second)
    {
        var ok = false;
        try
        {
            if (first is not null) { var a = false; first.DangerousAddRef(ref a); _first = first; }
            if (second is not null) { var b = false; second.DangerousAddRef(ref b); _second = second; }
            ok = true;
        }
        finally
        {
            if (!ok) Release();
        }
    }

    /// <summary>AddRefs one more handle (kernel launches touch any number of buffers).</summary>
    internal void AddHandle(SafeHandle handle)
    {
        var added = false;
        handle.DangerousAddRef(ref added);
        (_more ??= []).Add(handle);
    }

    /// <summary>Adds a pin of caller memory (a <see cref="Memory{T}"/> the stream pinned), released with the handles.</summary>
    internal void AddPin(MemoryHandle pin)
    {
        _pin = pin;
        _hasPin = true;
    }

    internal void Release()
    {
        _first?.DangerousRelease();
        _first = null;
        _second?.DangerousRelease();
        _second = null;
        if (_more is not null)
        {
            foreach (var handle in _more) handle.DangerousRelease();
            _more = null;
        }
        if (_hasPin) { _pin.Dispose(); _hasPin = false; }
    }
}

using System.Runtime.InteropServices;

namespace CheckpointGpu.Devices.Interop;

/// <summary>
/// Base of the OpenCL handle types. A child handle (queue, buffer, event, program, kernel) AddRefs its parent
/// (usually the context) when created and releases it after its own native release, so the context is destroyed
/// last even when finalizers run in arbitrary order (STYLE B4).
/// </summary>
internal abstract class SafeClHandle : SafeHandle
{
    private SafeHandle? _parent;

    private protected SafeClHandle() : base(IntPtr.Zero, ownsHandle: true)
    {
    }

    public sealed override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>Takes ownership of <paramref name="native"/> (one reference) and holds a reference on <paramref name="parent"/>.</summary>
    private protected void Initialize(nint native, SafeHandle? parent)
    {
        if (parent is not null)
        {
            var added = false;
            parent.DangerousAddRef(ref added);
            _parent = parent;
        }
        SetHandle(native);
        OnCreated();
    }

    private protected abstract void OnCreated();

    private protected abstract int ReleaseNative(nint native);

    protected sealed override bool ReleaseHandle()
    {
        var status = ReleaseNative(handle);
        _parent?.DangerousRelease();
        _parent = null;
        return status == OpenCLErrors.Success;
    }
}

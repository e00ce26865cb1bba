using CheckpointGpu.Devices;
using CheckpointGpu.Devices.Ilgpu;
using CheckpointGpu.Format;
using ILGPU;
using ILGPU.Runtime;

namespace CheckpointGpu;

/// <summary>Bring your own ILGPU: variables over ILGPU buffers the caller allocated and keeps owning.</summary>
public sealed partial class Variable
{
    /// <summary>
    /// Makes a caller's ILGPU buffer a checkpointable variable (not yet a dependency of anything), without copying.
    /// If it is tracked later under a name with a pending restore, the restored value is written into the buffer.
    /// </summary>
    /// <typeparam name="T">Element type; gives the dtype (<c>float</c> → float32, <c>int</c> → int32, <c>long</c> → int64, <c>double</c>, <c>Half</c>, <c>byte</c>, <c>bool</c>, …).</typeparam>
    /// <param name="accelerator">The engine's view of the buffer's ILGPU accelerator (<see cref="IlgpuAccelerator.FromExisting"/> or <see cref="Devices.Accelerator.Create(AcceleratorKind, int)"/>).</param>
    /// <param name="buffer">The caller's buffer; exactly <c>shape.ElementCount</c> elements. Ownership stays with the caller: disposing the variable never disposes it; keep it alive while the variable is in use.</param>
    /// <param name="name">TF variable name (<c>full_name</c>).</param>
    /// <param name="shape">Shape, outermost dimension first, row-major over the buffer.</param>
    /// <returns>The variable; its contents are the buffer's current contents.</returns>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="buffer"/>'s length differs from <paramref name="shape"/>'s element count, or it belongs to another accelerator.</exception>
    /// <exception cref="NotSupportedException"><typeparamref name="T"/> has no TensorFlow dtype.</exception>
    public static Variable FromIlgpu<T>(IlgpuAccelerator accelerator, MemoryBuffer1D<T, Stride1D.Dense> buffer, string name, TensorShape shape)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        ArgumentNullException.ThrowIfNull(buffer);
        ArgumentNullException.ThrowIfNull(name);
        var dtype = DTypeMap.Of<T>();
        CheckBufferLength(buffer.Length, shape, name);
        return CreateCore(accelerator, name, dtype, shape, KeepContents.Instance, null, null, () => accelerator.Wrap(buffer));
    }

    /// <summary>
    /// Makes a caller's ILGPU buffer the variable <paramref name="edgeName"/> of <paramref name="parent"/> and, when a
    /// checkpoint restore is pending for that name, restores into the buffer at once (restore-on-create into the
    /// caller's memory). Without a pending restore the buffer's contents are kept as the initial value.
    /// </summary>
    /// <typeparam name="T">Element type; gives the dtype.</typeparam>
    /// <param name="parent">The owner object.</param>
    /// <param name="edgeName">Dependency name (for example <c>kernel</c>).</param>
    /// <param name="accelerator">The engine's view of the buffer's ILGPU accelerator.</param>
    /// <param name="buffer">The caller's buffer (typically just allocated by the caller's own factory); ownership stays with the caller.</param>
    /// <param name="shape">Shape; <c>shape.ElementCount</c> must equal the buffer's length.</param>
    /// <param name="fullName">TF variable name; defaults to <paramref name="edgeName"/>.</param>
    /// <returns>The tracked variable.</returns>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">The buffer's length differs from <paramref name="shape"/>, it belongs to another accelerator, or another object is tracked under <paramref name="edgeName"/>.</exception>
    /// <exception cref="NotSupportedException"><typeparamref name="T"/> has no TensorFlow dtype.</exception>
    /// <exception cref="CheckpointMismatchException">The pending checkpoint value's dtype differs from <typeparamref name="T"/>'s, or its shape from <paramref name="shape"/> / the buffer's length; names the object path and key, and is thrown before any byte is copied.</exception>
    public static Variable FromIlgpu<T>(Trackable parent, string edgeName, IlgpuAccelerator accelerator, MemoryBuffer1D<T, Stride1D.Dense> buffer,
        TensorShape shape, string? fullName = null) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(parent);
        ArgumentNullException.ThrowIfNull(edgeName);
        ArgumentNullException.ThrowIfNull(accelerator);
        ArgumentNullException.ThrowIfNull(buffer);
        var dtype = DTypeMap.Of<T>();
        var name = fullName ?? edgeName;
        var position = parent.PreloadSimpleRestoration(edgeName);
        if (position is { } p)
        {
            // The buffer is what receives the bytes: check it against the checkpoint before anything else.
            var stored = p.GetSimpleValueInfo();
            if (stored.DType != dtype || stored.Shape.ElementCount != buffer.Length)
                throw new CheckpointMismatchException(
                    stored.DType != dtype
                        ? $"Dtype mismatch restoring variable '{name}' into an ILGPU buffer of {typeof(T).Name}."
                        : $"Length mismatch restoring variable '{name}' into an ILGPU buffer of {buffer.Length} elements.",
                    p.CheckpointPrefix, p.ObjectPath, p.SimpleValueKey,
                    $"{DTypes.GetName(dtype)} buffer of {buffer.Length} elements",
                    $"{DTypes.GetName(stored.DType)} {stored.Shape} ({stored.Shape.ElementCount} elements)");
        }
        CheckBufferLength(buffer.Length, shape, name);
        var variable = CreateCore(accelerator, name, dtype, shape, KeepContents.Instance, position, position?.ObjectPath, () => accelerator.Wrap(buffer));
        try
        {
            return parent.TrackDependency(edgeName, variable);
        }
        catch
        {
            // As in AddVariable: a failed restore walk of the new variable leaves it neither tracked nor alive.
            if (ReferenceEquals(parent.LookupDependency(edgeName), variable)) parent.RemoveDependency(edgeName);
            variable.Dispose();
            throw;
        }
    }

    private static void CheckBufferLength(long bufferLength, TensorShape shape, string name)
    {
        if (bufferLength != shape.ElementCount)
            throw new ArgumentException($"Variable '{name}': the ILGPU buffer has {bufferLength} elements but shape {shape} has {shape.ElementCount}.", nameof(shape));
    }

    /// <summary>The caller's buffer already holds the initial value.</summary>
    private sealed class KeepContents : VariableInitializer
    {
        internal static readonly KeepContents Instance = new();

        protected internal override void Initialize(Variable variable) { }
    }
}

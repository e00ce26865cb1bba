using System.Runtime.InteropServices;
using CheckpointGpu.Format;

namespace CheckpointGpu;

/// <summary>
/// Produces a <see cref="Variable"/>'s initial value when nothing is restored into it at creation (TF's
/// <c>initializer</c> / <c>initial_value</c>). Not run when the value comes from a checkpoint (restore-on-create).
/// </summary>
/// <remarks>Thread-safety: the built-in initializers are immutable and thread-safe.</remarks>
public abstract class VariableInitializer
{
    /// <summary>Creates an initializer.</summary>
    protected VariableInitializer() { }

    /// <summary>All bytes zero (0, 0.0, false).</summary>
    public static VariableInitializer Zeros { get; } = new ZerosInitializer();

    /// <summary>Every element equal to <paramref name="value"/>.</summary>
    /// <typeparam name="T">Element type; must match the variable's dtype.</typeparam>
    /// <param name="value">The value.</param>
    /// <returns>The initializer.</returns>
    public static VariableInitializer Constant<T>(T value) where T : unmanaged => new HostInitializer<T>(null, value);

    /// <summary>The given elements, row-major.</summary>
    /// <typeparam name="T">Element type; must match the variable's dtype.</typeparam>
    /// <param name="values">Exactly <c>ElementCount</c> elements (copied).</param>
    /// <returns>The initializer.</returns>
    public static VariableInitializer FromValues<T>(ReadOnlySpan<T> values) where T : unmanaged => new HostInitializer<T>(values.ToArray(), default);

    /// <summary>A host callback filling the raw row-major little-endian bytes.</summary>
    /// <param name="fill">Receives a zeroed span of <c>LengthInBytes</c> bytes (the whole tensor; use only for host-sized tensors).</param>
    /// <returns>The initializer.</returns>
    public static VariableInitializer FromHost(Action<Span<byte>> fill)
    {
        ArgumentNullException.ThrowIfNull(fill);
        return new CallbackInitializer(fill);
    }

    /// <summary>Writes the initial value into <paramref name="variable"/>'s buffer (through its accelerator stream).</summary>
    /// <param name="variable">The new variable; its dtype and shape are final.</param>
    protected internal abstract void Initialize(Variable variable);

    private sealed class ZerosInitializer : VariableInitializer
    {
        protected internal override void Initialize(Variable variable) => variable.FillZero();
    }

    private sealed class HostInitializer<T>(T[]? values, T scalar) : VariableInitializer where T : unmanaged
    {
        protected internal override void Initialize(Variable variable)
        {
            if (DTypeMap.Of<T>() != variable.DType)
                throw new ArgumentException($"Initializer of {typeof(T).Name} does not match variable '{variable.Name}' of dtype {DTypes.GetName(variable.DType)}.");
            if (values is not null)
            {
                variable.Assign<T>(values);
                return;
            }
            var all = new T[checked((int)variable.Shape.ElementCount)];
            Array.Fill(all, scalar);
            variable.Assign<T>(all);
        }
    }

    private sealed class CallbackInitializer(Action<Span<byte>> fill) : VariableInitializer
    {
        protected internal override void Initialize(Variable variable)
        {
            var bytes = new byte[checked((int)variable.LengthInBytes)];
            fill(bytes);
            variable.AssignBytes(bytes);
        }
    }
}

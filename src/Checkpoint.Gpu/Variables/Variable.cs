using System.Runtime.InteropServices;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;

namespace CheckpointGpu;

/// <summary>
/// A dense tensor held in accelerator memory (TF's <c>tf.Variable</c> / <c>ResourceVariable</c>): a fixed-size
/// <see cref="DType"/>, a <see cref="Shape"/> and a <see cref="DeviceBuffer"/> of exactly
/// <c>ElementCount × element size</c> bytes, row-major, little-endian elements. Saved as the single attribute
/// <c>VARIABLE_VALUE</c> with <c>full_name</c> = <see cref="Name"/>.
/// </summary>
/// <remarks>
/// <para>Create variables through a parent — <see cref="Create(Trackable, string, Accelerator, DType, TensorShape, VariableInitializer?, string?)"/>
/// or a subclass's <c>AddVariable</c> — so that a pending restore supplies the initial value (restore-on-create).
/// A variable created with <see cref="Create(Accelerator, string, DType, TensorShape, VariableInitializer?)"/> and
/// tracked later is initialized first and then restored when tracked.</para>
/// <para>Ownership: the variable owns its buffer and frees it on <see cref="Dispose"/>. Host transfers go through
/// the accelerator's default stream and complete before the methods return.</para>
/// <para>Thread-safety: reads and assigns are not synchronized with each other.</para>
/// </remarks>
public sealed partial class Variable : Trackable, IDisposable
{
    private readonly DeviceBuffer _buffer;
    private IReadOnlyList<SaveableValue>? _attributes;

    private Variable(Accelerator accelerator, string name, DType dtype, TensorShape shape, DeviceBuffer? external = null)
    {
        Accelerator = accelerator;
        Name = name;
        DType = dtype;
        Shape = shape;
        ElementSize = DTypes.GetElementSize(dtype);
        LengthInBytes = checked(shape.ElementCount * ElementSize);
        // An external buffer (bring-your-own ILGPU, Variable.Ilgpu.cs) is the caller's memory seen through a
        // non-owning wrapper; disposing the variable disposes only the wrapper.
        _buffer = external ?? accelerator.Allocate(LengthInBytes);
        IsExternal = external is not null;
    }

    /// <summary>True when the buffer is the caller's own memory (bring-your-own ILGPU): work on it is not ordered by our streams.</summary>
    internal bool IsExternal { get; }

    /// <summary>TF variable name without <c>:0</c> (for example <c>dense/kernel</c>); saved as <c>full_name</c> and matched by name-based restores.</summary>
    public string Name { get; }

    /// <summary>Element type (fixed-size).</summary>
    public DType DType { get; }

    /// <summary>Shape, outermost dimension first.</summary>
    public TensorShape Shape { get; }

    /// <summary>Size of one element in bytes.</summary>
    public int ElementSize { get; }

    /// <summary>Size of the value in bytes (<c>ElementCount × ElementSize</c>).</summary>
    public long LengthInBytes { get; }

    /// <summary>Number of elements.</summary>
    public long ElementCount => Shape.ElementCount;

    /// <summary>The accelerator holding the value.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>The device memory holding the value; owned by this variable.</summary>
    /// <exception cref="ObjectDisposedException">The variable is disposed.</exception>
    public DeviceBuffer Buffer
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            return _buffer;
        }
    }

    /// <summary>True after <see cref="Dispose"/>.</summary>
    public bool IsDisposed { get; private set; }

    /// <summary>
    /// Creates a variable that is not (yet) a dependency of anything, and initializes it. If it is tracked later
    /// under a name with a pending restore, the restored value overwrites the initial one.
    /// </summary>
    /// <param name="accelerator">Accelerator for the buffer; not disposed here.</param>
    /// <param name="name">TF variable name (<c>full_name</c>).</param>
    /// <param name="dtype">Fixed-size element type.</param>
    /// <param name="shape">Shape.</param>
    /// <param name="initializer">Initial value; <see langword="null"/> means zeros.</param>
    /// <returns>The variable; the caller disposes it.</returns>
    /// <exception cref="ArgumentException"><paramref name="dtype"/> is not fixed-size.</exception>
    /// <exception cref="AcceleratorException">Allocation or the initial copy failed.</exception>
    public static Variable Create(Accelerator accelerator, string name, DType dtype, TensorShape shape, VariableInitializer? initializer = null)
        => CreateCore(accelerator, name, dtype, shape, initializer, null, null);

    /// <summary>
    /// Creates a variable as dependency <paramref name="edgeName"/> of <paramref name="parent"/>, taking its initial
    /// value from a pending checkpoint restore when there is one (restore-on-create, TF's <c>add_variable</c>).
    /// </summary>
    /// <param name="parent">The owner object.</param>
    /// <param name="edgeName">Dependency name (for example <c>kernel</c>).</param>
    /// <param name="accelerator">Accelerator for the buffer.</param>
    /// <param name="dtype">Fixed-size element type.</param>
    /// <param name="shape">Shape.</param>
    /// <param name="initializer">Initial value when nothing is restored; <see langword="null"/> means zeros.</param>
    /// <param name="fullName">TF variable name; defaults to <paramref name="edgeName"/>.</param>
    /// <returns>The variable; the caller (or <paramref name="parent"/>'s owner) disposes it.</returns>
    /// <exception cref="ArgumentException">Invalid dtype or a different object is already tracked under <paramref name="edgeName"/>.</exception>
    /// <exception cref="CheckpointMismatchException">The pending checkpoint value has another dtype or shape.</exception>
    public static Variable Create(Trackable parent, string edgeName, Accelerator accelerator, DType dtype, TensorShape shape,
        VariableInitializer? initializer = null, string? fullName = null)
    {
        ArgumentNullException.ThrowIfNull(parent);
        return parent.AddVariable(edgeName, accelerator, dtype, shape, initializer, fullName);
    }

    internal static Variable CreateCore(Accelerator accelerator, string name, DType dtype, TensorShape shape,
        VariableInitializer? initializer, CheckpointPosition? restoreFrom, string? objectPath, Func<DeviceBuffer>? external = null)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        ArgumentNullException.ThrowIfNull(name);
        if (!DTypes.IsFixedSize(dtype))
            throw new ArgumentException($"Variable '{name}': dtype {DTypes.GetName(dtype)} is not a fixed-size type.", nameof(dtype));
        if (restoreFrom is { } position)
        {
            // Validate before allocating: a mismatch must not leave a half-made variable behind.
            var info = position.GetSimpleValueInfo();
            CheckCompatible(name, dtype, shape, info.DType, info.Shape, position.CheckpointPrefix, objectPath, position.SimpleValueKey);
        }
        var variable = new Variable(accelerator, name, dtype, shape, external?.Invoke());
        try
        {
            if (restoreFrom is { } p)
                p.ReadSimpleValueInto(variable);   // sets UpdateUid: the later tracking does not restore again
            else
                (initializer ?? VariableInitializer.Zeros).Initialize(variable);
        }
        catch
        {
            variable.Dispose();
            throw;
        }
        return variable;
    }

    /// <inheritdoc/>
    protected internal override IReadOnlyList<SaveableValue> GetSaveableValues() => _attributes ??= [new VariableSaveable(this)];

    /// <summary>Copies <paramref name="values"/> into the buffer.</summary>
    /// <typeparam name="T">CLR type matching <see cref="DType"/> (float for float32, long for int64, …).</typeparam>
    /// <param name="values">Exactly <see cref="ElementCount"/> elements, row-major.</param>
    /// <exception cref="ArgumentException">Wrong type or length.</exception>
    /// <exception cref="ObjectDisposedException">The variable is disposed.</exception>
    public void Assign<T>(ReadOnlySpan<T> values) where T : unmanaged
    {
        CheckType<T>();
        AssignBytes(MemoryMarshal.AsBytes(values));
    }

    /// <summary>Copies the value to a new array.</summary>
    /// <typeparam name="T">CLR type matching <see cref="DType"/>.</typeparam>
    /// <returns>Row-major elements.</returns>
    /// <exception cref="ArgumentException">Wrong type.</exception>
    /// <exception cref="ObjectDisposedException">The variable is disposed.</exception>
    public T[] Read<T>() where T : unmanaged
    {
        CheckType<T>();
        var result = new T[checked((int)ElementCount)];
        ReadBytes(MemoryMarshal.AsBytes(result.AsSpan()));
        return result;
    }

    /// <summary>Copies raw bytes (row-major, little-endian elements) into the buffer.</summary>
    /// <param name="bytes">Exactly <see cref="LengthInBytes"/> bytes.</param>
    /// <exception cref="ArgumentException">Wrong length.</exception>
    /// <exception cref="ObjectDisposedException">The variable is disposed.</exception>
    public unsafe void AssignBytes(ReadOnlySpan<byte> bytes)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (bytes.Length != LengthInBytes)
            throw new ArgumentException($"Variable '{Name}' holds {LengthInBytes} bytes, got {bytes.Length}.", nameof(bytes));
        if (bytes.Length == 0) return;
        CopyFromHost(bytes, 0);
    }

    /// <summary>Copies the raw value bytes to <paramref name="destination"/>.</summary>
    /// <param name="destination">Exactly <see cref="LengthInBytes"/> bytes.</param>
    /// <exception cref="ArgumentException">Wrong length.</exception>
    /// <exception cref="ObjectDisposedException">The variable is disposed.</exception>
    public unsafe void ReadBytes(Span<byte> destination)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (destination.Length != LengthInBytes)
            throw new ArgumentException($"Variable '{Name}' holds {LengthInBytes} bytes, destination has {destination.Length}.", nameof(destination));
        if (destination.Length == 0) return;
        CopyToHost(0, destination);
    }

    /// <summary>Copies the raw value bytes to a new array.</summary>
    /// <returns>The bytes.</returns>
    /// <exception cref="InvalidOperationException">The value is larger than an array can hold (2 GiB).</exception>
    public byte[] ReadBytes()
    {
        if (LengthInBytes > Array.MaxLength)
            throw new InvalidOperationException($"Variable '{Name}' is {LengthInBytes} bytes; read it in chunks.");
        var bytes = new byte[LengthInBytes];
        ReadBytes(bytes);
        return bytes;
    }

    /// <summary>Copies host bytes into part of the buffer and waits for completion.</summary>
    internal unsafe void CopyFromHost(ReadOnlySpan<byte> bytes, long offsetInBytes)
    {
        var stream = Accelerator.DefaultStream;
        fixed (byte* p = bytes)
        {
            // The pointer stays valid until Synchronize returns, which covers the copy.
            stream.EnqueueCopyFromHost((nint)p, _buffer.View(offsetInBytes, bytes.Length));
            stream.Synchronize();
        }
        MarkModified();   // change tracking (Variable.ChangeTracking.cs): assign and every restore path end here
    }

    /// <summary>Copies part of the buffer to host memory and waits for completion.</summary>
    internal unsafe void CopyToHost(long offsetInBytes, Span<byte> destination)
    {
        var stream = Accelerator.DefaultStream;
        fixed (byte* p = destination)
        {
            stream.EnqueueCopyToHost(_buffer.View(offsetInBytes, destination.Length), (nint)p);
            stream.Synchronize();
        }
    }

    internal void FillZero()
    {
        if (LengthInBytes == 0) return;
        var stream = Accelerator.DefaultStream;
        stream.EnqueueFill(_buffer.AsView(), 0);
        stream.Synchronize();
        MarkModified();   // change tracking
    }

    internal void CheckCompatible(DType storedDType, TensorShape storedShape, string? prefix, string? objectPath, string? key) =>
        CheckCompatible(Name, DType, Shape, storedDType, storedShape, prefix, objectPath, key);

    private static void CheckCompatible(string name, DType dtype, TensorShape shape, DType storedDType, TensorShape storedShape,
        string? prefix, string? objectPath, string? key)
    {
        // TF's RestoreV2 requires an exact dtype (no casting); assignment requires an equal shape.
        if (storedDType != dtype || storedShape != shape)
            throw new CheckpointMismatchException(
                storedDType != dtype
                    ? $"Dtype mismatch restoring variable '{name}'."
                    : $"Shape mismatch restoring variable '{name}'.",
                prefix, objectPath, key,
                $"{DTypes.GetName(dtype)} {shape}", $"{DTypes.GetName(storedDType)} {storedShape}");
    }

    private void CheckType<T>() where T : unmanaged
    {
        var dtype = DTypeMap.Of<T>();
        if (dtype != DType)
            throw new ArgumentException($"Variable '{Name}' has dtype {DTypes.GetName(DType)}; {typeof(T).Name} ({DTypes.GetName(dtype)}) does not match.");
    }

    /// <summary>Frees the device buffer (after operations already queued on it complete).</summary>
    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        _buffer.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => $"Variable '{Name}' {DTypes.GetName(DType)} {Shape} on {Accelerator.Kind}";
}

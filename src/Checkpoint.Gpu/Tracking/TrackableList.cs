using System.Collections;
using System.Globalization;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;

namespace CheckpointGpu;

/// <summary>
/// A list whose elements are dependencies named <c>"0"</c>, <c>"1"</c>, … (TF's <c>ListWrapper</c>,
/// <c>tensorflow/python/trackable/data_structures.py</c>). Keras 3 optimizers keep <c>_variables</c>,
/// <c>_momentums</c> and <c>_velocities</c> in such lists, and models keep their layers.
/// </summary>
/// <remarks>
/// Only appends and in-place replacement are supported: removing or inserting would renumber edges, which TF refuses
/// to save. A list with no elements has no checkpoint values and is ignored by
/// <see cref="LoadStatus.AssertExistingObjectsMatched"/>. Thread-safety: not thread-safe.
/// </remarks>
/// <typeparam name="T">Element type.</typeparam>
public class TrackableList<T> : Trackable, IReadOnlyList<T> where T : Trackable
{
    private readonly List<T> _items = [];

    /// <summary>Creates an empty list.</summary>
    public TrackableList() { }

    /// <summary>Creates a list holding <paramref name="items"/>, tracked in order.</summary>
    /// <param name="items">Initial elements.</param>
    public TrackableList(IEnumerable<T> items)
    {
        ArgumentNullException.ThrowIfNull(items);
        foreach (var item in items) Add(item);
    }

    /// <summary>Number of elements.</summary>
    public int Count => _items.Count;

    /// <summary>Gets or replaces element <paramref name="index"/> (replacing keeps the edge name).</summary>
    /// <param name="index">0-based index.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="index"/> is out of range.</exception>
    public T this[int index]
    {
        get => _items[index];
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            ArgumentOutOfRangeException.ThrowIfNegative(index);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, _items.Count);
            _items[index] = TrackDependency(ElementName(index), value, overwrite: true);
        }
    }

    /// <summary>Appends <paramref name="item"/> as edge <c>Count</c>; a restore deferred under that index applies at once.</summary>
    /// <param name="item">The element.</param>
    /// <exception cref="ArgumentNullException"><paramref name="item"/> is null.</exception>
    /// <exception cref="CheckpointMismatchException">A deferred restore does not fit <paramref name="item"/>.</exception>
    public void Add(T item)
    {
        ArgumentNullException.ThrowIfNull(item);
        var name = ElementName(_items.Count);
        _items.Add(item);
        try { TrackDependency(name, item, overwrite: true); }
        catch { _items.RemoveAt(_items.Count - 1); RemoveDependency(name); throw; }
    }

    /// <summary>
    /// Creates a variable and appends it, taking its initial value from a pending checkpoint restore for that
    /// index when there is one (restore-on-create; see <see cref="Trackable.AddVariable"/>).
    /// </summary>
    /// <param name="accelerator">Accelerator for the value.</param>
    /// <param name="dtype">Element type (fixed-size).</param>
    /// <param name="shape">Shape.</param>
    /// <param name="initializer">Initial value when nothing is restored; <see langword="null"/> means zeros.</param>
    /// <param name="fullName">TF variable name (<c>full_name</c>).</param>
    /// <returns>The new variable (it must be of type <typeparamref name="T"/>).</returns>
    /// <exception cref="InvalidOperationException"><typeparamref name="T"/> cannot hold a <see cref="Variable"/>.</exception>
    /// <exception cref="CheckpointMismatchException">The pending checkpoint value has another dtype or shape.</exception>
    public Variable AddVariable(Accelerator accelerator, DType dtype, TensorShape shape, VariableInitializer? initializer = null, string? fullName = null)
    {
        if (!typeof(T).IsAssignableFrom(typeof(Variable)))
            throw new InvalidOperationException($"A TrackableList<{typeof(T).Name}> cannot hold variables.");
        var name = ElementName(_items.Count);
        var position = PreloadSimpleRestoration(name);
        var variable = Variable.CreateCore(accelerator, fullName ?? name, dtype, shape, initializer, position, position?.ObjectPath);
        try
        {
            Add((T)(Trackable)variable);   // untracks it again if its restore walk (its optimizer slots) fails
        }
        catch
        {
            variable.Dispose();
            throw;
        }
        return variable;
    }

    /// <inheritdoc/>
    public IEnumerator<T> GetEnumerator() => _items.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    private static string ElementName(int index) => index.ToString(CultureInfo.InvariantCulture);
}

/// <summary>A <see cref="TrackableList{T}"/> of any trackables.</summary>
public sealed class TrackableList : TrackableList<Trackable>
{
    /// <summary>Creates an empty list.</summary>
    public TrackableList() { }

    /// <summary>Creates a list holding <paramref name="items"/>.</summary>
    /// <param name="items">Initial elements.</param>
    public TrackableList(IEnumerable<Trackable> items) : base(items) { }
}

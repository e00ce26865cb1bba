using System.Collections;
using System.Diagnostics.CodeAnalysis;

namespace CheckpointGpu;

/// <summary>
/// A string-keyed dictionary whose values are dependencies named by their keys, in insertion order (TF's
/// <c>_DictWrapper</c>, <c>tensorflow/python/trackable/data_structures.py</c>). Keras 3 optimizers keep an empty one
/// as <c>_trainable_variables_indices</c>.
/// </summary>
/// <remarks>Replacing a value keeps the edge's position; removing an entry removes its edge. An empty dictionary
/// has no checkpoint values. Thread-safety: not thread-safe.</remarks>
/// <typeparam name="T">Value type.</typeparam>
public class TrackableDictionary<T> : Trackable, IReadOnlyDictionary<string, T> where T : Trackable
{
    private readonly Dictionary<string, T> _items = new(StringComparer.Ordinal);

    /// <summary>Number of entries.</summary>
    public int Count => _items.Count;

    /// <summary>Gets or sets the value for <paramref name="key"/>; setting tracks it as edge <paramref name="key"/>.</summary>
    /// <param name="key">Edge name.</param>
    /// <exception cref="KeyNotFoundException">Getting a missing key.</exception>
    public T this[string key]
    {
        get => _items[key];
        set
        {
            ArgumentNullException.ThrowIfNull(key);
            ArgumentNullException.ThrowIfNull(value);
            TrackDependency(key, value, overwrite: true);
            _items[key] = value;
        }
    }

    /// <summary>Keys in insertion order.</summary>
    public IEnumerable<string> Keys => GetChildren().Select(c => c.Name);

    /// <summary>Values in insertion order.</summary>
    public IEnumerable<T> Values => GetChildren().Select(c => (T)c.Target);

    /// <summary>Adds or replaces an entry (same as the indexer's setter).</summary>
    /// <param name="key">Edge name.</param>
    /// <param name="value">Value.</param>
    public void Add(string key, T value) => this[key] = value;

    /// <summary>Removes an entry and its edge.</summary>
    /// <param name="key">Edge name.</param>
    /// <returns>True if it existed.</returns>
    public bool Remove(string key) => _items.Remove(key) && RemoveDependency(key);

    /// <inheritdoc/>
    public bool ContainsKey(string key) => _items.ContainsKey(key);

    /// <inheritdoc/>
    public bool TryGetValue(string key, [MaybeNullWhen(false)] out T value) => _items.TryGetValue(key, out value);

    /// <inheritdoc/>
    public IEnumerator<KeyValuePair<string, T>> GetEnumerator() =>
        GetChildren().Select(c => new KeyValuePair<string, T>(c.Name, (T)c.Target)).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}

/// <summary>A <see cref="TrackableDictionary{T}"/> of any trackables.</summary>
public sealed class TrackableDictionary : TrackableDictionary<Trackable>
{
}

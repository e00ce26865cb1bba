using System.Runtime.CompilerServices;

namespace CheckpointGpu;

/// <summary>
/// A <see cref="Trackable"/> whose dependencies are declared the way Keras and <c>tf.Module</c> track attribute
/// assignment (TF's <c>AutoTrackable</c>, <c>tensorflow/python/trackable/autotrackable.py</c>): either explicitly
/// with <see cref="Track{T}(string, T)"/>, or from a property setter with <see cref="Track{T}(T, string)"/>, whose
/// name defaults to the calling member's name.
/// </summary>
/// <example>
/// <code>
/// sealed class Model : AutoTrackable
/// {
///     public Model(Dense fc1) { Fc1 = fc1; }
///     public Dense Fc1 { get => _fc1; set => _fc1 = Track(value, "fc1"); }   // TF attribute name
///     private Dense _fc1 = null!;
/// }
/// </code>
/// </example>
/// <remarks>Assigning another object to the same name replaces the edge in place (TF's <c>overwrite=True</c>);
/// assigning <see langword="null"/> removes it. Thread-safety: not thread-safe.</remarks>
public class AutoTrackable : Trackable
{
    /// <summary>Creates an object with no dependencies.</summary>
    public AutoTrackable() { }

    /// <summary>
    /// Tracks <paramref name="child"/> as dependency <paramref name="name"/>, replacing an existing edge of that name;
    /// <see langword="null"/> removes the edge. A restore deferred under <paramref name="name"/> is applied at once.
    /// </summary>
    /// <typeparam name="T">The child's type.</typeparam>
    /// <param name="name">Edge name (TF attribute name, for example <c>optimizer</c>).</param>
    /// <param name="child">The child, or <see langword="null"/> to remove the edge.</param>
    /// <returns><paramref name="child"/>.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="name"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="name"/> is empty.</exception>
    /// <exception cref="CheckpointMismatchException">A deferred restore for <paramref name="name"/> does not fit <paramref name="child"/>.</exception>
    public T Track<T>(string name, T child) where T : Trackable?
    {
        ArgumentNullException.ThrowIfNull(name);
        if (child is null)
        {
            RemoveDependency(name);
            return child;
        }
        TrackDependency<Trackable>(name, child, overwrite: true);
        return child;
    }

    /// <summary>
    /// Tracks a dependency given as an untyped value, as TF's attribute assignment does; a value that is not a
    /// <see cref="Trackable"/> is an error (TF: <c>ValueError</c>) rather than silently not saved.
    /// </summary>
    /// <param name="name">Edge name.</param>
    /// <param name="value">The child, or <see langword="null"/> to remove the edge.</param>
    /// <returns>The tracked object, or <see langword="null"/>.</returns>
    /// <exception cref="ArgumentException"><paramref name="value"/> is not a <see cref="Trackable"/>.</exception>
    public Trackable? TrackObject(string name, object? value) => value switch
    {
        null => Track<Trackable?>(name, null),
        Trackable t => Track(name, t),
        _ => throw new ArgumentException(
            $"Dependency '{name}' must be a trackable object (derived from {nameof(Trackable)}), got {value.GetType().FullName}.", nameof(value)),
    };

    /// <summary>
    /// Declaration helper for property setters and constructors: tracks <paramref name="child"/> under
    /// <paramref name="name"/>, which defaults to the calling member's name (C# casing: pass the TensorFlow name
    /// explicitly when the checkpoint must interoperate, e.g. <c>Track(value, "kernel")</c>).
    /// </summary>
    /// <typeparam name="T">The child's type.</typeparam>
    /// <param name="child">The child, or <see langword="null"/> to remove the edge.</param>
    /// <param name="name">Edge name; filled in by the compiler.</param>
    /// <returns><paramref name="child"/>, for assignment to a backing field.</returns>
    /// <exception cref="ArgumentException"><paramref name="name"/> is empty.</exception>
    protected T Track<T>(T child, [CallerMemberName] string name = "") where T : Trackable? => Track(name, child);
}

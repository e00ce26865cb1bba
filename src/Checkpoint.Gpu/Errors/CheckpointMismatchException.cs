using System.Text;

namespace CheckpointGpu;

/// <summary>
/// A checkpoint does not match the live objects it is restored into: a stored dtype or shape differs from a
/// <see cref="Variable"/>'s, or a <see cref="LoadStatus"/> assertion failed (TensorFlow raises
/// <c>AssertionError</c> or <c>InvalidArgumentError</c>; see <c>tensorflow/python/checkpoint/checkpoint.py</c>).
/// </summary>
/// <remarks>
/// <see cref="ObjectPath"/> uses TensorFlow's readable form (<c>(root).model.dense.kernel</c>); <see cref="Key"/> is
/// the checkpoint key involved, when a single one is. <see cref="Unmatched"/> lists every unmatched node or object
/// (the message shows at most <see cref="MaxListedItems"/> of them). Never contains tensor contents.
/// </remarks>
public sealed class CheckpointMismatchException : Exception
{
    /// <summary>How many unmatched items the message lists before summarizing the rest.</summary>
    public const int MaxListedItems = 20;

    /// <summary>Creates an exception with a plain message.</summary>
    public CheckpointMismatchException() : this("The checkpoint does not match the restored objects.") { }

    /// <summary>Creates an exception with a plain message.</summary>
    /// <param name="message">The message.</param>
    public CheckpointMismatchException(string message) : base(message) { Unmatched = []; }

    /// <summary>Creates an exception with a plain message and an inner exception.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public CheckpointMismatchException(string message, Exception innerException) : base(message, innerException) { Unmatched = []; }

    /// <summary>Creates an exception with structured context.</summary>
    /// <param name="message">What is wrong (first sentence of the message).</param>
    /// <param name="checkpointPath">Checkpoint prefix involved, or <see langword="null"/>.</param>
    /// <param name="objectPath">Readable object path (<c>(root).a.b</c>), or <see langword="null"/>.</param>
    /// <param name="key">Checkpoint key, or <see langword="null"/>.</param>
    /// <param name="expected">Expected value (dtype/shape of the live object), or <see langword="null"/>.</param>
    /// <param name="actual">Value found in the checkpoint, or <see langword="null"/>.</param>
    /// <param name="unmatched">Unmatched nodes/objects to list, or <see langword="null"/>.</param>
    public CheckpointMismatchException(string message, string? checkpointPath, string? objectPath, string? key,
        string? expected, string? actual, IReadOnlyList<string>? unmatched = null)
        : base(Format(message, checkpointPath, objectPath, key, expected, actual, unmatched))
    {
        CheckpointPath = checkpointPath;
        ObjectPath = objectPath;
        Key = key;
        Expected = expected;
        Actual = actual;
        Unmatched = unmatched ?? [];
    }

    /// <summary>The checkpoint prefix involved, when known.</summary>
    public string? CheckpointPath { get; }

    /// <summary>Readable path of the object involved (<c>(root).model.dense.kernel</c>), when a single one is.</summary>
    public string? ObjectPath { get; }

    /// <summary>The checkpoint key involved, when a single one is.</summary>
    public string? Key { get; }

    /// <summary>What the live object expected (for example <c>float32 [3, 4]</c>).</summary>
    public string? Expected { get; }

    /// <summary>What the checkpoint holds.</summary>
    public string? Actual { get; }

    /// <summary>Every unmatched checkpoint node or live object (not capped).</summary>
    public IReadOnlyList<string> Unmatched { get; }

    private static string Format(string message, string? checkpointPath, string? objectPath, string? key,
        string? expected, string? actual, IReadOnlyList<string>? unmatched)
    {
        var sb = new StringBuilder();
        if (checkpointPath is not null) sb.Append(checkpointPath).Append(": ");
        sb.Append(message);
        if (objectPath is not null) sb.Append(" Object: ").Append(objectPath).Append('.');
        if (key is not null) sb.Append(" Key: '").Append(key).Append("'.");
        if (expected is not null || actual is not null)
            sb.Append(" Expected ").Append(expected ?? "?").Append(", found ").Append(actual ?? "?").Append('.');
        if (unmatched is { Count: > 0 })
        {
            var shown = Math.Min(unmatched.Count, MaxListedItems);
            for (var i = 0; i < shown; i++) sb.Append('\n').Append("  ").Append(unmatched[i]);
            if (unmatched.Count > shown) sb.Append('\n').Append("  … and ").Append(unmatched.Count - shown).Append(" more");
        }
        return sb.ToString();
    }
}

using System.Text;

namespace CheckpointGpu.Format;

/// <summary>
/// The one key-grammar class: reserved keys and the grammar of object-based checkpoint keys (<c>trackable_utils.py</c>,
/// <c>constants.py</c>, <c>tensor_bundle.cc</c>; spec sections 6.1 and 6.4), the display text of raw table keys
/// (<see cref="ToDisplay"/>: slice keys are not UTF-8) and the display names of object-graph nodes
/// (<see cref="NodeDisplayNames"/>).
/// </summary>
/// <remarks>Stateless and thread-safe.</remarks>
public static partial class CheckpointKeys
{
    /// <summary>The header entry's key: the empty string, so it sorts first (<c>kHeaderEntryKey</c>).</summary>
    public const string HeaderEntry = "";

    /// <summary>Key of the serialized <c>TrackableObjectGraph</c> (DT_STRING scalar); its presence makes a checkpoint object-based.</summary>
    public const string ObjectGraph = "_CHECKPOINTABLE_OBJECT_GRAPH";

    /// <summary>Path component separating an object path from its attribute names.</summary>
    public const string ObjectAttributes = ".ATTRIBUTES";

    /// <summary>Attribute name of a variable's value.</summary>
    public const string VariableValue = "VARIABLE_VALUE";

    /// <summary>Path component introducing a slot variable's optimizer path.</summary>
    public const string OptimizerSlot = ".OPTIMIZER_SLOT";

    /// <summary>Edge name of <c>tf.train.Checkpoint</c>'s save counter.</summary>
    public const string SaveCounter = "save_counter";

    /// <summary>TF's <c>object_path_to_string</c>: escaped edge names joined by <c>/</c>.</summary>
    /// <param name="edgeNames">Unescaped edge names from the root.</param>
    /// <returns>The object path (empty for the root).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="edgeNames"/> is null.</exception>
    public static string ObjectPath(IEnumerable<string> edgeNames)
    {
        ArgumentNullException.ThrowIfNull(edgeNames);
        var sb = new StringBuilder();
        foreach (var name in edgeNames)
        {
            if (sb.Length > 0) sb.Append('/');
            sb.Append(EscapeLocalName(name));
        }
        return sb.ToString();
    }

    /// <summary>Reserved attribute name for JSON configuration (TF 2.0-alpha era files).</summary>
    public const string ObjectConfigJson = "OBJECT_CONFIG_JSON";

    /// <summary>Escapes one object-path component: every <c>.</c> becomes <c>..</c>, then every <c>/</c> becomes <c>.S</c>.</summary>
    /// <param name="name">An edge or attribute name.</param>
    /// <returns>The escaped name, e.g. <c>a.b/c</c> → <c>a..b.Sc</c>.</returns>
    public static string EscapeLocalName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.Replace(".", "..", StringComparison.Ordinal).Replace("/", ".S", StringComparison.Ordinal);
    }

    /// <summary>Inverse of <see cref="EscapeLocalName"/>.</summary>
    /// <param name="escaped">An escaped component.</param>
    /// <exception cref="ArgumentException">A <c>.</c> is followed by something other than <c>.</c> or <c>S</c>.</exception>
    public static string UnescapeLocalName(string escaped)
    {
        ArgumentNullException.ThrowIfNull(escaped);
        var sb = new StringBuilder(escaped.Length);
        for (var i = 0; i < escaped.Length; i++)
        {
            var c = escaped[i];
            if (c != '.') { sb.Append(c); continue; }
            if (i + 1 >= escaped.Length) throw new ArgumentException($"dangling '.' in escaped name '{escaped}'.", nameof(escaped));
            var n = escaped[++i];
            sb.Append(n switch
            {
                '.' => '.',
                'S' => '/',
                _ => throw new ArgumentException($"invalid escape '.{n}' in '{escaped}'.", nameof(escaped)),
            });
        }
        return sb.ToString();
    }

    /// <summary>Builds <c>&lt;objectPath&gt;/.ATTRIBUTES/&lt;escaped attribute&gt;</c>.</summary>
    /// <param name="objectPath">Escaped object path (components joined with <c>/</c>; empty for the root).</param>
    /// <param name="attributeName">Unescaped attribute name, e.g. <see cref="VariableValue"/>.</param>
    public static string AttributeKey(string objectPath, string attributeName)
    {
        ArgumentNullException.ThrowIfNull(objectPath);
        return objectPath + "/" + ObjectAttributes + "/" + EscapeLocalName(attributeName);
    }

    /// <summary>Builds a slot variable's object path <c>&lt;variable path&gt;/.OPTIMIZER_SLOT/&lt;optimizer path&gt;/&lt;escaped slot&gt;</c>.</summary>
    /// <param name="variablePath">Escaped path of the original variable.</param>
    /// <param name="optimizerPath">Escaped path of the optimizer.</param>
    /// <param name="slotName">Unescaped slot name, e.g. <c>m</c>.</param>
    public static string SlotVariablePath(string variablePath, string optimizerPath, string slotName) =>
        variablePath + "/" + OptimizerSlot + "/" + optimizerPath + "/" + EscapeLocalName(slotName);
}

using System.Text;

namespace CheckpointGpu;

/// <summary>
/// Checkpoint key grammar (TF's <c>tensorflow/python/trackable/trackable_utils.py</c> and <c>constants.py</c>;
/// spec §6.4).
/// </summary>
internal static class CheckpointNames
{
    public const string ObjectGraph = Format.CheckpointKeys.ObjectGraph;
    public const string ObjectAttributes = ".ATTRIBUTES";
    public const string OptimizerSlot = ".OPTIMIZER_SLOT";
    public const string VariableValue = "VARIABLE_VALUE";
    public const string SaveCounter = "save_counter";

    /// <summary>TF's <c>escape_local_name</c>: <c>.</c> → <c>..</c>, then <c>/</c> → <c>.S</c>.</summary>
    public static string Escape(string name) => Format.CheckpointKeys.EscapeLocalName(name);

    /// <summary>TF's <c>object_path_to_string</c>: escaped edge names joined by <c>/</c>.</summary>
    public static string ObjectPath(IEnumerable<string> edgeNames)
    {
        var sb = new StringBuilder();
        foreach (var name in edgeNames)
        {
            if (sb.Length > 0) sb.Append('/');
            sb.Append(Escape(name));
        }
        return sb.ToString();
    }

    /// <summary>TF's <c>checkpoint_key</c>: <c>&lt;path&gt;/.ATTRIBUTES/&lt;escaped attribute&gt;</c>.</summary>
    public static string AttributeKey(string objectPath, string attributeName) => $"{objectPath}/{ObjectAttributes}/{Escape(attributeName)}";

    /// <summary>TF's <c>slot_variable_key</c>: <c>&lt;var path&gt;/.OPTIMIZER_SLOT/&lt;optimizer path&gt;/&lt;escaped slot&gt;</c>.</summary>
    public static string SlotVariablePath(string variablePath, string optimizerPath, string slotName) =>
        $"{variablePath}/{OptimizerSlot}/{optimizerPath}/{Escape(slotName)}";
}

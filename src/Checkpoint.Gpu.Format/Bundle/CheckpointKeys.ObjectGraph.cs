using CheckpointGpu.Format.Protos;

namespace CheckpointGpu.Format;

// Node display names (TF's ObjectGraphProtoPrettyPrinter), part of the one key-grammar class.
public static partial class CheckpointKeys
{
    /// <summary>
    /// Readable names for the nodes of a <see cref="TrackableObjectGraph"/>, as TensorFlow prints them
    /// (<c>ObjectGraphProtoPrettyPrinter.node_names</c> in <c>tensorflow/python/checkpoint/checkpoint.py</c>):
    /// <c>(root).model.layer_with_weights-0.kernel</c>; one per node, indexed by node id. Each node gets the first path found
    /// breadth-first from node 0 over <c>children</c> edges (the rule TF also uses to assign checkpoint keys, spec §6.3);
    /// slot-variable nodes are named <c>&lt;optimizer&gt;'s state 'm' for &lt;variable&gt;</c>; nodes reachable by neither
    /// <c>(unreachable node N)</c>; out-of-range node ids are skipped.
    /// </summary>
    /// <param name="graph">The object graph.</param>
    /// <returns>An array with <c>graph.Nodes.Count</c> names.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="graph"/> is null.</exception>
    public static string[] NodeDisplayNames(TrackableObjectGraph graph)
    {
        ArgumentNullException.ThrowIfNull(graph);
        var names = new string?[graph.Nodes.Count];
        if (names.Length == 0) return [];
        names[0] = "(root)";
        var queue = new Queue<int>();
        queue.Enqueue(0);
        while (queue.Count > 0)
        {
            var id = queue.Dequeue();
            foreach (var child in graph.Nodes[id].Children)
            {
                if (child.NodeId < 0 || child.NodeId >= names.Length || names[child.NodeId] is not null) continue;
                names[child.NodeId] = names[id] + "." + child.LocalName;
                queue.Enqueue(child.NodeId);
            }
        }
        for (var id = 0; id < graph.Nodes.Count; id++)
            foreach (var slot in graph.Nodes[id].SlotVariables)
                if (slot.SlotVariableNodeId >= 0 && slot.SlotVariableNodeId < names.Length && slot.OriginalVariableNodeId >= 0 && slot.OriginalVariableNodeId < names.Length)
                    names[slot.SlotVariableNodeId] = $"{names[id]}'s state '{slot.SlotName}' for {names[slot.OriginalVariableNodeId]}";
        for (var i = 0; i < names.Length; i++) names[i] ??= $"(unreachable node {i})";
        return names!;
    }
}

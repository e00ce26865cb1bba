using CheckpointGpu.Format.Protos;

namespace CheckpointGpu.Cli.Output;

/// <summary>
/// Readable paths for the nodes of a <see cref="TrackableObjectGraph"/>, in the style of TF's
/// <c>ObjectGraphProtoPrettyPrinter</c> (<c>tensorflow/python/checkpoint/checkpoint.py</c>):
/// <c>(root).model.layer_with_weights-0.kernel</c>.
/// </summary>
/// <remarks>
/// Each node gets the first path found breadth-first from node 0 over <c>children</c> edges (the
/// same rule TF uses to assign keys). Slot-variable nodes have no incoming child edge; they are named
/// <c>&lt;variable path&gt;'s state 'm' for &lt;optimizer path&gt;</c>. Nodes reachable by neither
/// are <c>(unreachable node N)</c>. Edge targets outside the node list are ignored here (the reader
/// reports them as format errors).
/// </remarks>
internal static class ObjectGraphPaths
{
    public static string[] Compute(TrackableObjectGraph graph)
    {
        var count = graph.Nodes.Count;
        var paths = new string?[count];
        if (count == 0) return [];
        paths[0] = "(root)";
        var queue = new Queue<int>();
        queue.Enqueue(0);
        while (queue.Count > 0)
        {
            var id = queue.Dequeue();
            foreach (var child in graph.Nodes[id].Children)
            {
                if (child.NodeId < 0 || child.NodeId >= count || paths[child.NodeId] is not null) continue;
                paths[child.NodeId] = paths[id] + "." + child.LocalName;
                queue.Enqueue(child.NodeId);
            }
        }
        for (var id = 0; id < count; id++)
        {
            foreach (var slot in graph.Nodes[id].SlotVariables)
            {
                var s = slot.SlotVariableNodeId;
                if (s < 0 || s >= count || paths[s] is not null) continue;
                var variable = slot.OriginalVariableNodeId >= 0 && slot.OriginalVariableNodeId < count
                    ? paths[slot.OriginalVariableNodeId] ?? $"(node {slot.OriginalVariableNodeId})"
                    : $"(node {slot.OriginalVariableNodeId})";
                paths[s] = $"{variable}'s state '{slot.SlotName}' for {paths[id] ?? $"(node {id})"}";
            }
        }
        var result = new string[count];
        for (var i = 0; i < count; i++) result[i] = paths[i] ?? $"(unreachable node {i})";
        return result;
    }
}

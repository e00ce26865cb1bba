using CheckpointGpu.Format;
using Google.Protobuf;
using CheckpointGpu.Format.Protos;
using static CheckpointGpu.Format.Protos.TrackableObjectGraph.Types;
using static CheckpointGpu.Format.Protos.TrackableObjectGraph.Types.TrackableObject.Types;

namespace CheckpointGpu;

/// <summary>
/// A view of the objects reachable from a root <see cref="Trackable"/>, numbered the way TensorFlow numbers
/// object-graph nodes (TF's <c>ObjectGraphView</c>, <c>tensorflow/python/checkpoint/graph_view.py</c>; spec §6.3):
/// breadth-first from the root, children in tracking order, then optimizer slot variables.
/// </summary>
/// <remarks>
/// The view only references the trackables; it snapshots the graph each time a method is called.
/// Thread-safety: not thread-safe (the tree must not change during a call).
/// </remarks>
public sealed class ObjectGraphView
{
    /// <summary>Creates a view rooted at <paramref name="root"/> (node 0).</summary>
    /// <param name="root">The root object.</param>
    public ObjectGraphView(Trackable root)
    {
        ArgumentNullException.ThrowIfNull(root);
        Root = root;
    }

    /// <summary>Node 0 of every graph built from this view.</summary>
    public Trackable Root { get; }

    /// <summary>
    /// Every reachable object in node-id order: breadth-first from <see cref="Root"/>, then slot variables
    /// (TF's <c>list_objects</c>).
    /// </summary>
    /// <param name="includeSlotVariables">Include optimizer slot variables (TF's <c>skip_slot_variables</c> negated).</param>
    /// <returns>The objects.</returns>
    public IReadOnlyList<Trackable> ListObjects(bool includeSlotVariables = true) =>
        ObjectGraphSnapshot.Build(Root, includeSlotVariables).Nodes.Select(n => n.Object).ToArray();

    /// <summary>
    /// Serializes the object graph exactly as TensorFlow does (<c>TrackableObjectGraph</c> bytes, the value of
    /// <c>_CHECKPOINTABLE_OBJECT_GRAPH</c>).
    /// </summary>
    /// <returns>The serialized proto.</returns>
    /// <exception cref="InvalidOperationException">A slot variable is also a regular dependency, or names collide.</exception>
    public byte[] SerializeObjectGraph() => ObjectGraphSnapshot.Build(Root, includeSlotVariables: true).Proto.ToByteArray();

    /// <summary>The checkpoint keys the objects would be saved under, in data-file order.</summary>
    /// <returns>Keys such as <c>model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE</c>, object graph excluded.</returns>
    public IReadOnlyList<string> ListCheckpointKeys() => ObjectGraphSnapshot.Build(Root, true).Tensors.Select(t => t.Key).ToArray();
}

/// <summary>One numbered object of a snapshot.</summary>
internal sealed class GraphNode(Trackable obj, int id, string path, string readablePath)
{
    public Trackable Object { get; } = obj;
    public int Id { get; } = id;
    /// <summary>Escaped object path used in keys ("" for the root).</summary>
    public string Path { get; } = path;
    /// <summary>TF pretty-printer name, e.g. <c>(root).model.kernel</c>.</summary>
    public string ReadablePath { get; } = readablePath;
}

/// <summary>One tensor to write: key, attribute, owning node.</summary>
internal readonly record struct GraphTensor(string Key, SaveableValue Attribute, int NodeId);

/// <summary>
/// The numbered object graph at one moment: nodes, the <c>TrackableObjectGraph</c> proto and the tensors to save
/// (TF's <c>save_util._serialize_gathered_objects</c> and <c>_fill_object_graph_proto</c>).
/// </summary>
internal sealed class ObjectGraphSnapshot
{
    private ObjectGraphSnapshot(List<GraphNode> nodes, Dictionary<Trackable, int> ids, TrackableObjectGraph proto, List<GraphTensor> tensors)
    {
        Nodes = nodes;
        NodeIds = ids;
        Proto = proto;
        Tensors = tensors;
    }

    public IReadOnlyList<GraphNode> Nodes { get; }
    public IReadOnlyDictionary<Trackable, int> NodeIds { get; }
    public TrackableObjectGraph Proto { get; }
    /// <summary>Tensors in node-id order, each object's attributes in order (TF's data-file order, spec §4.1).</summary>
    public IReadOnlyList<GraphTensor> Tensors { get; }

    public static ObjectGraphSnapshot Build(Trackable root, bool includeSlotVariables, bool writeHasCheckpointValues = true)
    {
        var nodes = new List<GraphNode>();
        var ids = new Dictionary<Trackable, int>(ReferenceEqualityComparer.Instance);
        var pathNames = new Dictionary<Trackable, string>(ReferenceEqualityComparer.Instance);
        var children = new List<IReadOnlyList<TrackableReference>>();

        // Breadth-first numbering (graph_view._breadth_first_traversal): a child gets the next id when first seen.
        var queue = new Queue<Trackable>();
        ids[root] = 0;
        nodes.Add(new GraphNode(root, 0, "", "(root)"));
        queue.Enqueue(root);
        while (queue.Count > 0)
        {
            var current = queue.Dequeue();
            var node = nodes[ids[current]];
            var edges = current.GetChildren();
            children.Add(edges);
            var seenNames = new HashSet<string>(StringComparer.Ordinal);
            foreach (var edge in edges)
            {
                if (!seenNames.Add(edge.Name))
                    throw new InvalidOperationException($"Object {node.ReadablePath} has two dependencies named '{edge.Name}'.");
                ArgumentNullException.ThrowIfNull(edge.Target);
                if (ids.ContainsKey(edge.Target)) continue;
                var id = nodes.Count;
                ids[edge.Target] = id;
                var path = ReferenceEquals(current, root)
                    ? CheckpointKeys.EscapeLocalName(edge.Name)
                    : node.Path + "/" + CheckpointKeys.EscapeLocalName(edge.Name);
                nodes.Add(new GraphNode(edge.Target, id, path, node.ReadablePath + "." + edge.Name));
                queue.Enqueue(edge.Target);
            }
        }
        var bfsCount = nodes.Count;

        // Slot variables (save_util._serialize_slot_variables): per optimizer in node order, per slot name, per
        // original variable in node order.
        var slotRefs = new Dictionary<int, List<SlotVariableReference>>();
        if (includeSlotVariables)
        {
            for (var optimizerId = 0; optimizerId < bfsCount; optimizerId++)
            {
                if (nodes[optimizerId].Object is not OptimizerBase optimizer) continue;
                foreach (var slotName in optimizer.SlotNames)
                {
                    for (var originalId = 0; originalId < bfsCount; originalId++)
                    {
                        if (nodes[originalId].Object is not Variable original) continue;
                        var slot = optimizer.GetSlot(original, slotName);
                        if (slot is null) continue;
                        if (slot.GetChildren().Count > 0)
                            throw new InvalidOperationException("Only variables with no dependencies can be saved as slot variables.");
                        if (ids.ContainsKey(slot))
                            throw new InvalidOperationException(
                                $"Slot variable '{slotName}' of {nodes[originalId].ReadablePath} is also a regular dependency (node {ids[slot]}); TF does not allow this.");
                        var slotId = nodes.Count;
                        ids[slot] = slotId;
                        var path = CheckpointKeys.SlotVariablePath(nodes[originalId].Path, nodes[optimizerId].Path, slotName);
                        nodes.Add(new GraphNode(slot, slotId, path,
                            $"{nodes[optimizerId].ReadablePath}'s state '{slotName}' for {nodes[originalId].ReadablePath}"));
                        if (!slotRefs.TryGetValue(optimizerId, out var list)) slotRefs[optimizerId] = list = [];
                        list.Add(new SlotVariableReference { OriginalVariableNodeId = originalId, SlotName = slotName, SlotVariableNodeId = slotId });
                    }
                }
            }
        }

        // Fill the proto: children (all edges, including ones to already-numbered nodes), attributes, slots.
        var proto = new TrackableObjectGraph();
        var tensors = new List<GraphTensor>();
        for (var id = 0; id < nodes.Count; id++)
        {
            var node = nodes[id];
            var obj = new TrackableObject();
            if (id < bfsCount)
                foreach (var edge in children[id])
                    obj.Children.Add(new ObjectReference { NodeId = ids[edge.Target], LocalName = edge.Name });
            var seenAttributes = new HashSet<string>(StringComparer.Ordinal);
            foreach (var attribute in node.Object.GetSaveableValues())
            {
                if (!seenAttributes.Add(attribute.Name))
                    throw new InvalidOperationException($"Object {node.ReadablePath} has two attributes named '{attribute.Name}'.");
                var key = CheckpointKeys.AttributeKey(node.Path, attribute.Name);
                obj.Attributes.Add(new SerializedTensor { Name = attribute.Name, FullName = attribute.FullName, CheckpointKey = key, OptionalRestore = attribute.OptionalRestore });
                tensors.Add(new GraphTensor(key, attribute, id));
            }
            if (slotRefs.TryGetValue(id, out var refs)) obj.SlotVariables.AddRange(refs);
            proto.Nodes.Add(obj);
        }
        if (writeHasCheckpointValues) FillHasCheckpointValues(proto);
        return new ObjectGraphSnapshot(nodes, ids, proto, tensors);
    }

    /// <summary>
    /// TF's <c>_add_checkpoint_values_check</c>: a node has values if it has attributes, slot variables or a
    /// registered saver, or if any node reachable through its children does.
    /// </summary>
    internal static void FillHasCheckpointValues(TrackableObjectGraph proto)
    {
        var parents = new Dictionary<int, HashSet<int>>();
        var hasValues = new HashSet<int>();
        for (var id = 0; id < proto.Nodes.Count; id++)
        {
            var node = proto.Nodes[id];
            if (node.Attributes.Count > 0 || node.SlotVariables.Count > 0 || node.RegisteredSaver is not null) hasValues.Add(id);
            foreach (var child in node.Children)
            {
                if (!parents.TryGetValue(child.NodeId, out var set)) parents[child.NodeId] = set = [];
                set.Add(id);
            }
        }
        var toVisit = new Stack<int>(hasValues);
        while (toVisit.Count > 0)
        {
            var current = toVisit.Pop();
            if (!parents.Remove(current, out var currentParents)) continue;
            foreach (var parent in currentParents)
            {
                hasValues.Add(parent);
                if (parents.ContainsKey(parent)) toVisit.Push(parent);
            }
        }
        for (var id = 0; id < proto.Nodes.Count; id++) proto.Nodes[id].HasCheckpointValues = hasValues.Contains(id);
    }
}

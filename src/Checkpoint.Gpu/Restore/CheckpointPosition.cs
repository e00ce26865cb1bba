using CheckpointGpu.IO;
using static CheckpointGpu.Format.Protos.TrackableObjectGraph.Types;

namespace CheckpointGpu;

/// <summary>
/// One node of a checkpoint's object graph within one restore (TF's <c>CheckpointPosition</c>,
/// <c>tensorflow/python/checkpoint/restore.py</c>).
/// </summary>
internal readonly struct CheckpointPosition(RestoreCoordinator checkpoint, int protoId)
{
    public RestoreCoordinator Checkpoint { get; } = checkpoint;

    public int ProtoId { get; } = protoId;

    public long RestoreUid => Checkpoint.RestoreUid;

    public TrackableObject ObjectProto => Checkpoint.Graph.Nodes[ProtoId];

    /// <summary>Readable node name (<c>(root).model.kernel</c>).</summary>
    public string ObjectPath => Checkpoint.NodeNames[ProtoId];

    public string CheckpointPrefix => Checkpoint.Prefix;

    /// <summary>TF's <c>is_simple_variable</c>: exactly one attribute, named <c>VARIABLE_VALUE</c>, and no children.</summary>
    public bool IsSimpleVariable
    {
        get
        {
            var proto = ObjectProto;
            return proto.Attributes.Count == 1 && proto.Attributes[0].Name == Format.CheckpointKeys.VariableValue && proto.Children.Count == 0;
        }
    }

    public string SimpleValueKey => ObjectProto.Attributes[0].CheckpointKey;

    public StoredTensorInfo GetSimpleValueInfo() => Checkpoint.GetInfo(SimpleValueKey, ObjectPath);

    /// <summary>Reads the simple-variable value straight into a new variable (restore-on-create) and marks it restored.</summary>
    public void ReadSimpleValueInto(Variable variable)
    {
        // The variable is being created: its factory disposes it if the read fails, so it may be filled in place
        // (not a caller-owned buffer, which outlives the variable).
        if (Checkpoint.Reader is EngineTensorReader engine) engine.ReadIntoVariable(SimpleValueKey, variable, isNew: !variable.IsExternal);
        else Checkpoint.Reader.ReadIntoVariable(SimpleValueKey, variable);
        variable.UpdateUid = RestoreUid;
    }

    /// <summary>TF's <c>bind_object</c>: records node → object; true when the correspondence is new.</summary>
    public bool BindObject(Trackable trackable)
    {
        var checkpoint = Checkpoint;
        checkpoint.AllTrackables.Add(trackable);
        checkpoint.MatchedProtoIds.Add(ProtoId);
        if (!checkpoint.ObjectByProtoId.TryGetValue(ProtoId, out var current))
        {
            checkpoint.ObjectByProtoId[ProtoId] = trackable;
            return true;
        }
        if (!ReferenceEquals(current, trackable))
            checkpoint.Warn($"Inconsistent references when loading the checkpoint into this object graph: node {ObjectPath} is already bound to {current}, not {trackable}; keeping the first.");
        return false;
    }

    /// <summary>TF's <c>CheckpointPosition.restore</c>: bind, then restore this object and its descendants.</summary>
    public void Restore(Trackable trackable)
    {
        if (BindObject(trackable)) Checkpoint.RestoreDescendants(this);
    }
}

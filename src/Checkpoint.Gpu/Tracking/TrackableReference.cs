namespace CheckpointGpu;

/// <summary>
/// A named dependency edge from one <see cref="Trackable"/> to another (TensorFlow's
/// <c>TrackableReference</c>, <c>tensorflow/python/trackable/base.py</c>). The name is the edge's
/// <c>local_name</c> in the object graph and, escaped, a component of every checkpoint key below it.
/// </summary>
/// <param name="Name">Edge name, unique among the parent's dependencies (for example <c>kernel</c>, <c>0</c>, <c>save_counter</c>).</param>
/// <param name="Target">The child object.</param>
public readonly record struct TrackableReference(string Name, Trackable Target);

using CheckpointGpu.Format;
using CheckpointGpu.Distributed.Variables;

namespace CheckpointGpu.Distributed;

/// <summary>
/// One piece of a save offered to an <see cref="IWorkerOwnership"/>: a tensor, or one locally held slice of a
/// <see cref="PartitionedVariable"/>.
/// </summary>
/// <param name="Key">Checkpoint key (for a slice: the full tensor's key).</param>
/// <param name="Owner">The trackable that saves it (a <see cref="Variable"/>, <see cref="RemoteVariable"/>, <see cref="PartitionedVariable"/>, state object…).</param>
/// <param name="Slice">For a slice of a partitioned variable, its region; otherwise <see langword="null"/>.</param>
/// <param name="Part">For a slice, the local part (its variable); otherwise <see langword="null"/>.</param>
/// <param name="EstimatedSizeInBytes">Payload size in bytes (0 for host state of unknown size).</param>
/// <param name="Ordinal">Position in the save's data order (identical on every worker for identical graphs).</param>
public readonly record struct OwnershipUnit(string Key, Trackable Owner, TensorSlice? Slice, VariablePart? Part, long EstimatedSizeInBytes, int Ordinal);

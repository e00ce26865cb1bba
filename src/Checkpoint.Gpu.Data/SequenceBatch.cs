namespace CheckpointGpu.Data;

/// <summary>One batch from a <see cref="DatasetIterator"/>.</summary>
/// <param name="Index">0-based number of the batch since the iterator started (counted across epochs and resumes).</param>
/// <param name="Epoch">0-based epoch the batch belongs to.</param>
/// <param name="SequenceIds">The dataset's ids of the batch's sequences, in batch order (see <see cref="SequenceDataset.Locate"/>).</param>
/// <param name="Data">The sequences, row-major: <c>batchSize × sequenceLength</c> bytes (shape [batch, sequence]).</param>
public sealed record SequenceBatch(long Index, long Epoch, IReadOnlyList<long> SequenceIds, byte[] Data);

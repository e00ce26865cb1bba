namespace CheckpointGpu.Distributed;

/// <summary>
/// Decides which worker writes each piece of a multi-worker save (each tensor, each locally held slice of a partitioned
/// variable). Every piece must be written by exactly one worker: the chief rejects a merge where a key is missing
/// (nobody wrote it) or duplicated (two workers wrote it).
/// </summary>
/// <remarks>
/// Implementations must be deterministic: all workers call them with equal lists (for replicated state) and must agree
/// on the owner of every piece they both hold. Thread-safety: implementations are called on the saving thread.
/// </remarks>
public interface IWorkerOwnership
{
    /// <summary>Returns the owner rank of every unit.</summary>
    /// <param name="units">The pieces this worker could write, in data order.</param>
    /// <param name="worker">This worker.</param>
    /// <returns>One rank (0 ≤ rank &lt; world size) per unit, in order.</returns>
    IReadOnlyList<int> AssignOwners(IReadOnlyList<OwnershipUnit> units, WorkerContext worker);
}

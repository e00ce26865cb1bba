namespace CheckpointGpu.Distributed;

/// <summary>
/// For data parallelism (every worker holds a replica of the same variables): spreads the writing of replicated
/// values over all workers so each writes about 1/N of the bytes, in parallel. Placement rules of
/// <see cref="PlacementOwnership"/> still apply first; the rest is assigned greedily — largest first (ties by data
/// order), each to the rank with the fewest bytes so far (ties to the lowest rank).
/// </summary>
/// <remarks>
/// Deterministic: equal unit lists give equal assignments on every worker, which is what makes replicated trees
/// agree. Thread-safety: as <see cref="PlacementOwnership"/>.
/// </remarks>
public sealed class BalancedOwnership : PlacementOwnership
{
    /// <inheritdoc/>
    protected override void AssignUnplaced(IReadOnlyList<OwnershipUnit> units, IReadOnlyList<int> unplaced, int[] owners, WorkerContext worker)
    {
        ArgumentNullException.ThrowIfNull(units);
        ArgumentNullException.ThrowIfNull(unplaced);
        ArgumentNullException.ThrowIfNull(owners);
        ArgumentNullException.ThrowIfNull(worker);
        var load = new long[worker.WorldSize];
        foreach (var i in unplaced.OrderByDescending(i => units[i].EstimatedSizeInBytes).ThenBy(i => units[i].Ordinal))
        {
            var best = 0;
            for (var r = 1; r < load.Length; r++)
                if (load[r] < load[best]) best = r;
            owners[i] = best;
            load[best] += Math.Max(1, units[i].EstimatedSizeInBytes);
        }
    }
}

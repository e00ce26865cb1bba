using System.Runtime.CompilerServices;
using CheckpointGpu.Distributed.Variables;

namespace CheckpointGpu.Distributed;

/// <summary>
/// The default ownership rule: the worker that holds a value writes it. Rules, in order: (1) an object placed with
/// <see cref="Place"/> is written by that rank; (2) a slice of a <see cref="PartitionedVariable"/> is written by the
/// worker holding it (each worker's tree contains only its own parts); (3) a <see cref="RemoteVariable"/> placeholder
/// is written by its <see cref="RemoteVariable.OwnerRank"/>, never locally; (4) everything else — replicated
/// variables, the save counter, host state — by <see cref="AssignUnplaced"/>, which in this class is the chief.
/// </summary>
/// <remarks>
/// For model parallelism, place each local variable on this worker (<c>Place(v, rank)</c>) and stand in for the
/// others with <see cref="RemoteVariable"/>s, or place the same objects identically on every worker. Thread-safety:
/// <see cref="Place"/> may be called concurrently with itself but not during a save.
/// </remarks>
public class PlacementOwnership : IWorkerOwnership
{
    private readonly ConditionalWeakTable<Trackable, StrongBox<int>> _placed = [];

    /// <summary>Records that <paramref name="trackable"/>'s values are written by <paramref name="rank"/>.</summary>
    /// <param name="trackable">A variable, partitioned variable or any trackable with values.</param>
    /// <param name="rank">Owner rank (checked against the world size at save time).</param>
    /// <returns>This instance.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="rank"/> is negative.</exception>
    public PlacementOwnership Place(Trackable trackable, int rank)
    {
        ArgumentNullException.ThrowIfNull(trackable);
        ArgumentOutOfRangeException.ThrowIfNegative(rank);
        _placed.AddOrUpdate(trackable, new StrongBox<int>(rank));
        return this;
    }

    /// <summary>The rank <paramref name="trackable"/> was placed on, if any.</summary>
    /// <param name="trackable">The object.</param>
    /// <param name="rank">The rank.</param>
    /// <returns>False when not placed.</returns>
    public bool TryGetPlacement(Trackable trackable, out int rank)
    {
        ArgumentNullException.ThrowIfNull(trackable);
        if (_placed.TryGetValue(trackable, out var box)) { rank = box.Value; return true; }
        rank = -1;
        return false;
    }

    /// <inheritdoc/>
    public IReadOnlyList<int> AssignOwners(IReadOnlyList<OwnershipUnit> units, WorkerContext worker)
    {
        ArgumentNullException.ThrowIfNull(units);
        ArgumentNullException.ThrowIfNull(worker);
        var owners = new int[units.Count];
        var unplaced = new List<int>();
        for (var i = 0; i < units.Count; i++)
        {
            var u = units[i];
            if (u.Part is { } part && TryGetPlacement(part.Variable, out var r)) owners[i] = r;
            else if (TryGetPlacement(u.Owner, out r)) owners[i] = r;
            else if (u.Part is not null) owners[i] = worker.Rank;
            else if (u.Owner is RemoteVariable remote) owners[i] = remote.OwnerRank;
            else { owners[i] = -1; unplaced.Add(i); }
        }
        AssignUnplaced(units, unplaced, owners, worker);
        return owners;
    }

    /// <summary>Chooses owners for units no rule placed (replicated state). This class gives them all to the chief.</summary>
    /// <param name="units">All units.</param>
    /// <param name="unplaced">Indices of the units to assign, in data order.</param>
    /// <param name="owners">Owner per unit; fill the entries at <paramref name="unplaced"/>.</param>
    /// <param name="worker">This worker.</param>
    protected virtual void AssignUnplaced(IReadOnlyList<OwnershipUnit> units, IReadOnlyList<int> unplaced, int[] owners, WorkerContext worker)
    {
        ArgumentNullException.ThrowIfNull(unplaced);
        ArgumentNullException.ThrowIfNull(owners);
        foreach (var i in unplaced) owners[i] = 0;
    }
}

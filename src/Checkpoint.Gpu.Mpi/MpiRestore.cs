using System.Text;
using CheckpointGpu.Distributed;

namespace CheckpointGpu.Mpi;

/// <summary>
/// Restore on M MPI ranks: rank 0 reads the checkpoint's index and object graph once and broadcasts them
/// (<see cref="CheckpointMetadata"/>); every rank then restores with
/// <see cref="Checkpoint.RestoreFromMetadata"/>, reading only the values and the slices of
/// partitioned variables it holds. A checkpoint written by N ranks (either coordination) restores on any M.
/// </summary>
public static class MpiRestore
{
    /// <summary>
    /// Collective: rank 0 reads the metadata of <paramref name="prefix"/> and broadcasts it; every rank returns it. A
    /// failure on rank 0 (missing or corrupt checkpoint) is broadcast too and thrown on every rank, so no rank waits forever.
    /// </summary>
    /// <param name="mpi">The coordination (every rank must call with the same prefix).</param>
    /// <param name="prefix">Checkpoint prefix (read on rank 0 only).</param>
    /// <param name="timeout">Watchdog for the broadcast (the job ends with <c>MPI_Abort</c> past it).</param>
    /// <returns>The metadata.</returns>
    /// <exception cref="IOException">Rank 0 could not read the checkpoint (the message is rank 0's error).</exception>
    public static CheckpointMetadata ReadMetadata(MpiCoordination mpi, string prefix, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(mpi);
        byte[]? payload = null;
        if (mpi.Rank == 0)
        {
            try
            {
                payload = [1, .. CheckpointMetadata.Read(prefix).ToBytes()];
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or Format.CheckpointFormatException)
            {
                payload = [0, .. Encoding.UTF8.GetBytes($"{ex.GetType().Name}: {ex.Message}")];
            }
        }
        var bytes = mpi.Broadcast(payload, timeout);
        if (bytes.Length == 0 || bytes[0] != 1)
            throw new IOException($"Rank 0 could not read the checkpoint metadata of '{prefix}': {Encoding.UTF8.GetString(bytes.AsSpan(Math.Min(1, bytes.Length)))}");
        return CheckpointMetadata.FromBytes(bytes.AsSpan(1));
    }

    /// <summary>Collective: <see cref="ReadMetadata"/>, then <see cref="Checkpoint.RestoreFromMetadata"/> on this rank.</summary>
    /// <param name="checkpoint">This rank's checkpoint object.</param>
    /// <param name="mpi">The coordination.</param>
    /// <param name="prefix">Checkpoint prefix.</param>
    /// <param name="timeout">Watchdog for the broadcast.</param>
    /// <param name="options">Restore options.</param>
    /// <returns>This rank's load status.</returns>
    /// <exception cref="IOException">Rank 0 could not read the checkpoint, or a data file could not be read.</exception>
    public static LoadStatus Restore(Checkpoint checkpoint, MpiCoordination mpi, string prefix, TimeSpan timeout, CheckpointOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        return checkpoint.RestoreFromMetadata(ReadMetadata(mpi, prefix, timeout), options);
    }
}

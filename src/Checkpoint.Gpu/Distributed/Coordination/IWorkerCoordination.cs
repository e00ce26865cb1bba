namespace CheckpointGpu.Distributed;

/// <summary>
/// What a multi-worker save needs from the group of workers: rank and world size, a barrier, gathering every worker's
/// report (status and part metadata) at the chief, and the chief's verdict (publish or abort, with the reason) to
/// every worker. Set on <see cref="WorkerContext.Coordination"/>; when none is set the workers coordinate through
/// completion-marker files in <see cref="WorkerContext.CoordinationDirectory"/> (the default, polling a shared filesystem).
/// <c>Checkpoint.Gpu.Mpi</c>'s <c>MpiCoordination</c> implements it with MPI collectives.
/// </summary>
/// <remarks>
/// <para><b>Call order.</b> Every save attempt calls, on every rank, either <see cref="Gather"/>/<see cref="GatherAsync"/>
/// followed by <see cref="ShareVerdict"/>/<see cref="ShareVerdictAsync"/>, or <see cref="ReportFailure"/> alone
/// (which must then complete the same two steps on behalf of the failed rank without blocking the caller). Attempts
/// happen in the same order on every rank (SPMD), so collective implementations can match them by order.</para>
/// <para><b>Sync and async.</b> The synchronous methods may block the calling thread; the asynchronous ones must not
/// block a thread-pool thread while other ranks are pending (an implementation whose transport blocks runs it on a
/// thread of its own). The one exception is a wait known to end within milliseconds — a non-chief rank's verdict once
/// the chief has reported that every report is in and it is merging — which may poll on the caller's thread, saving a
/// thread hand-off when the verdict arrives.</para>
/// <para>Implementations must be thread-safe: a worker's synchronous and asynchronous saves may call from different threads.</para>
/// </remarks>
public interface IWorkerCoordination
{
    /// <summary>This worker's rank, 0 ≤ rank &lt; <see cref="WorldSize"/>; rank 0 is the chief.</summary>
    int Rank { get; }

    /// <summary>Number of workers in the group (≥ 1).</summary>
    int WorldSize { get; }

    /// <summary>
    /// True when the reports gathered at the chief carry each part's serialized index (<see cref="WorkerReport.PartIndex"/>),
    /// so the chief merges from memory and never reads a part's <c>.index</c> file; false when the chief reads the part
    /// indexes from the shared filesystem.
    /// </summary>
    bool CarriesPartIndexes { get; }

    /// <summary>Blocks until every rank has called a barrier (the same number of times).</summary>
    /// <param name="timeout">How long to wait for the other ranks.</param>
    /// <exception cref="TimeoutException">Not every rank arrived in time (implementations that cannot time out document what happens instead).</exception>
    void Barrier(TimeSpan timeout);

    /// <summary>Asynchronous <see cref="Barrier"/>: completes when every rank has arrived; holds no thread-pool thread meanwhile.</summary>
    /// <param name="timeout">How long to wait for the other ranks.</param>
    /// <param name="cancellationToken">Stops waiting (implementations that cannot cancel a started collective document it).</param>
    /// <returns>A task completing when all ranks have arrived.</returns>
    /// <exception cref="TimeoutException">Not every rank arrived in time.</exception>
    Task BarrierAsync(TimeSpan timeout, CancellationToken cancellationToken);

    /// <summary>
    /// Sends this rank's report for <paramref name="round"/> to the chief. On the chief, returns every rank's report in
    /// rank order once all arrived, or earlier, as soon as one reports failure; an entry is null when that rank had not
    /// reported by then or within <see cref="CoordinationRound.Timeout"/>. On other ranks returns null once the report is sent.
    /// </summary>
    /// <param name="round">The checkpoint attempt.</param>
    /// <param name="report">This rank's report.</param>
    /// <returns>The reports (chief), or null (other ranks).</returns>
    /// <exception cref="IOException">The report could not be sent.</exception>
    IReadOnlyList<WorkerReport?>? Gather(CoordinationRound round, WorkerReport report);

    /// <summary>Asynchronous <see cref="Gather"/>; holds no thread-pool thread while other ranks are pending.</summary>
    /// <param name="round">The checkpoint attempt.</param>
    /// <param name="report">This rank's report.</param>
    /// <param name="cancellationToken">Stops waiting (see the implementation for collectives already started).</param>
    /// <returns>The reports (chief), or null (other ranks).</returns>
    /// <exception cref="IOException">The report could not be sent.</exception>
    /// <exception cref="OperationCanceledException">Cancelled while waiting.</exception>
    Task<IReadOnlyList<WorkerReport?>?> GatherAsync(CoordinationRound round, WorkerReport report, CancellationToken cancellationToken);

    /// <summary>
    /// On the chief, delivers <paramref name="verdict"/> to every rank and returns it. On other ranks (pass null), waits
    /// for the chief's verdict (up to twice <see cref="CoordinationRound.Timeout"/>) and returns it; returns null
    /// without waiting when <see cref="CoordinationRound.WaitForVerdict"/> is false and the verdict is not known yet.
    /// </summary>
    /// <param name="round">The checkpoint attempt.</param>
    /// <param name="verdict">The chief's verdict; null on other ranks.</param>
    /// <returns>The verdict, or null (see above).</returns>
    /// <exception cref="MultiWorkerCheckpointException">A non-chief rank got no verdict in time.</exception>
    CoordinationVerdict? ShareVerdict(CoordinationRound round, CoordinationVerdict? verdict);

    /// <summary>Asynchronous <see cref="ShareVerdict"/>; holds no thread-pool thread while waiting.</summary>
    /// <param name="round">The checkpoint attempt.</param>
    /// <param name="verdict">The chief's verdict; null on other ranks.</param>
    /// <param name="cancellationToken">Stops waiting.</param>
    /// <returns>The verdict, or null.</returns>
    /// <exception cref="MultiWorkerCheckpointException">A non-chief rank got no verdict in time.</exception>
    Task<CoordinationVerdict?> ShareVerdictAsync(CoordinationRound round, CoordinationVerdict? verdict, CancellationToken cancellationToken);

    /// <summary>
    /// Reports that this rank failed <paramref name="round"/> before its part was complete, so the chief aborts without
    /// waiting for a timeout. Never blocks on other ranks: an implementation whose collectives need every rank completes
    /// the gather and the verdict on this rank's behalf in the background (on the chief, with an abort verdict).
    /// Best effort: never throws for transport problems.
    /// </summary>
    /// <param name="round">The checkpoint attempt.</param>
    /// <param name="failure">This rank's report, <see cref="WorkerReport.Succeeded"/> false.</param>
    void ReportFailure(CoordinationRound round, WorkerReport failure);
}

/// <summary>One checkpoint attempt being coordinated.</summary>
/// <param name="Prefix">Absolute prefix of the merged checkpoint.</param>
/// <param name="Attempt">How many times this job has saved <paramref name="Prefix"/> (1 for the first save).</param>
/// <param name="Timeout">How long the chief waits for reports (other ranks wait up to twice this for the verdict).</param>
/// <param name="WaitForVerdict">Non-chief ranks wait for the verdict (<see cref="WorkerContext.WaitForPublished"/>).</param>
/// <param name="JobId">The job id (<see cref="WorkerContext.JobId"/>), or null.</param>
public sealed record CoordinationRound(string Prefix, int Attempt, TimeSpan Timeout, bool WaitForVerdict, string? JobId)
{
    /// <summary>
    /// Number of this attempt among all attempts of the <see cref="WorkerContext"/> (and its copies), 1, 2, … in the
    /// order saves were started: identical on every rank (SPMD). Collective implementations run rounds strictly in this
    /// order, even when a later save reports a failure before an earlier one has finished. 0 when not set.
    /// </summary>
    public long Sequence { get; init; }
}

/// <summary>A worker's report on one checkpoint attempt.</summary>
public sealed record WorkerReport
{
    /// <summary>The reporting rank.</summary>
    public required int Rank { get; init; }

    /// <summary>The world size the rank was started with.</summary>
    public required int WorldSize { get; init; }

    /// <summary>True when the part is durable; false when the rank failed (<see cref="Error"/> says why).</summary>
    public required bool Succeeded { get; init; }

    /// <summary>Absolute prefix of the checkpoint the rank saved (must equal the chief's).</summary>
    public required string Prefix { get; init; }

    /// <summary>Upper-case hex SHA-256 of the rank's serialized object graph (must equal the chief's).</summary>
    public string? GraphSha256 { get; init; }

    /// <summary>The rank's part bundle prefix, or null when it wrote none.</summary>
    public string? PartPrefix { get; init; }

    /// <summary>Entries in the part (the chief's includes the object graph).</summary>
    public int EntryCount { get; init; }

    /// <summary>Tensor bytes the rank wrote (estimate for strings).</summary>
    public long BytesWritten { get; init; }

    /// <summary>The failure, as <c>Type: message</c>; null on success.</summary>
    public string? Error { get; init; }

    /// <summary>
    /// The part's serialized index (the bytes of its <c>.index</c> file: TF's table of <c>BundleHeaderProto</c> and
    /// <c>BundleEntryProto</c>), when the coordination carries part indexes; empty otherwise.
    /// </summary>
    public ReadOnlyMemory<byte> PartIndex { get; init; }
}

/// <summary>The chief's decision on one checkpoint attempt.</summary>
public sealed record CoordinationVerdict
{
    /// <summary>True: the merged checkpoint is published. False: aborted, nothing published.</summary>
    public required bool Published { get; init; }

    /// <summary>Why the checkpoint was aborted; null when published.</summary>
    public string? Reason { get; init; }

    /// <summary>Ranks that did not report in time.</summary>
    public IReadOnlyList<int> MissingRanks { get; init; } = [];

    /// <summary>Ranks that failed or reported inconsistently.</summary>
    public IReadOnlyList<int> FailedRanks { get; init; } = [];
}

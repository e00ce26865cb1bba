using System.Globalization;

namespace CheckpointGpu.Distributed;

/// <summary>
/// Identity of this process within a multi-worker job and how its checkpoint saves coordinate: rank, world size and a
/// coordination directory on the filesystem every worker shares (NFS, Lustre, a FUSE-mounted object store; a local
/// disk in tests). Set it on <see cref="CheckpointOptions.MultiWorker"/> to make <see cref="Checkpoint.Save"/>,
/// <see cref="Checkpoint.Write"/>, <see cref="CheckpointManager.Save"/> and their async forms
/// (<see cref="Checkpoint.SaveAsync"/>, <see cref="CheckpointManager.SaveAsync"/>, through the IO pipeline) multi-worker saves.
/// </summary>
/// <remarks>
/// <para><b>Model (SPMD).</b> Every worker runs the same program and builds the same object graph (same nodes, edges,
/// attribute keys), so the serialized graphs are identical; the chief checks this by comparing the SHA-256 of the
/// graph bytes reported in every completion marker. Workers agree on the checkpoint number and prefix because each
/// derives it from its own copy of the save counter (or step), which advances identically; the chief verifies that
/// every marker names the same prefix. Which worker writes which tensor is decided by <see cref="Ownership"/>; no
/// tensor is copied between workers.</para>
/// <para><b>Protocol</b> (see <see cref="MultiWorkerCheckpointException"/> for failures):
/// (1) worker r writes the tensors it owns as a complete bundle <c>&lt;prefix&gt;_temp/part-0000r-of-0000N</c>
/// (the chief adds the object graph), flushed to disk, and flushes the directory; a worker owning nothing writes no
/// bundle (TF would count an empty shard in <c>num_shards</c>). (2) It writes its completion marker
/// <c>&lt;coordination dir&gt;/&lt;name&gt;[.&lt;job&gt;].rank-0000r.json</c> atomically (temporary name, flush, rename),
/// reporting success or its error. (3) The chief polls for all N markers with exponential backoff (5 ms doubling
/// to 200 ms) until <see cref="Timeout"/>; a failed, inconsistent or missing worker aborts the checkpoint: the chief
/// writes an <c>aborted</c> marker, removes <c>&lt;prefix&gt;_temp/</c>, and throws naming the ranks. (4) Otherwise it
/// checks that the parts hold every key of the graph, merges them with <c>TensorBundle.Merge</c> (TF's MergeBundles,
/// index published atomically), removes the temporaries, writes a <c>published</c> marker and deletes the worker
/// markers. (5) Only then does the chief update the <c>checkpoint</c> state file and prune (non-chief workers never
/// do). With <see cref="WaitForPublished"/>, non-chief workers return only after the chief's <c>published</c> marker
/// (and fail when they find <c>aborted</c>).</para>
/// <para><b>Other coordinations.</b> Steps (2), (3) and the verdict are what <see cref="IWorkerCoordination"/>
/// abstracts; the marker files above are the default. With <see cref="WorkerContext(IWorkerCoordination)"/> (for
/// example <c>Checkpoint.Gpu.Mpi</c>'s <c>MpiCoordination</c>) the reports, with every part's index, reach the chief
/// over that transport, the chief merges from memory, and no coordination file is written or polled.</para>
/// <para><b>Stale markers.</b> Markers are consumed by the chief after each checkpoint. Set a per-run
/// <see cref="JobId"/> (the launcher does) so markers left by a crashed earlier run are never mistaken for this
/// run's.</para>
/// <para>Immutable after construction (init-only); thread-safe.</para>
/// </remarks>
public sealed class WorkerContext
{
    /// <summary>Environment variable holding the rank (<c>CKPT_WORKER_RANK</c>).</summary>
    public const string RankVariable = "CKPT_WORKER_RANK";

    /// <summary>Environment variable holding the world size (<c>CKPT_WORLD_SIZE</c>).</summary>
    public const string WorldSizeVariable = "CKPT_WORLD_SIZE";

    /// <summary>Environment variable holding the coordination directory (<c>CKPT_COORDINATION_DIR</c>).</summary>
    public const string CoordinationDirectoryVariable = "CKPT_COORDINATION_DIR";

    /// <summary>Environment variable holding the job id (<c>CKPT_JOB_ID</c>, optional).</summary>
    public const string JobIdVariable = "CKPT_JOB_ID";

    /// <summary>Environment variable holding the coordination timeout in seconds (<c>CKPT_COORDINATION_TIMEOUT_S</c>, optional).</summary>
    public const string TimeoutVariable = "CKPT_COORDINATION_TIMEOUT_S";

    private readonly TimeSpan _timeout = TimeSpan.FromMinutes(5);
    private readonly string? _jobId;
    // Shared by copies made with With(): attempt numbers per prefix and the chief's last verdict file.
    private readonly AttemptState _state = new();

    private sealed class AttemptState
    {
        public readonly Lock Gate = new();
        public readonly Dictionary<string, int> Attempts = new(StringComparer.Ordinal);
        public long Rounds;
        public string? LastVerdict;
    }

    /// <summary>Creates the context of worker <paramref name="rank"/> of <paramref name="worldSize"/>.</summary>
    /// <param name="rank">This worker's rank, 0 ≤ rank &lt; <paramref name="worldSize"/>; rank 0 is the chief.</param>
    /// <param name="worldSize">Number of workers, ≥ 1 (and below 100000, the width of TF's shard names).</param>
    /// <param name="coordinationDirectory">A directory every worker can read and write (created if missing).</param>
    /// <exception cref="ArgumentOutOfRangeException">Rank or world size out of range.</exception>
    /// <exception cref="ArgumentException"><paramref name="coordinationDirectory"/> is empty.</exception>
    public WorkerContext(int rank, int worldSize, string coordinationDirectory)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(worldSize, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(worldSize, 99999);
        ArgumentOutOfRangeException.ThrowIfNegative(rank);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(rank, worldSize);
        ArgumentException.ThrowIfNullOrEmpty(coordinationDirectory);
        Rank = rank;
        WorldSize = worldSize;
        CoordinationDirectory = Path.GetFullPath(coordinationDirectory);
    }

    /// <summary>
    /// Creates the context of this process in a group that coordinates through <paramref name="coordination"/> (for example
    /// <c>Checkpoint.Gpu.Mpi</c>'s <c>MpiCoordination</c>): rank and world size come from it, no coordination directory is used.
    /// </summary>
    /// <param name="coordination">The group's coordination.</param>
    /// <exception cref="ArgumentNullException"><paramref name="coordination"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">Its rank or world size is out of range.</exception>
    public WorkerContext(IWorkerCoordination coordination)
    {
        ArgumentNullException.ThrowIfNull(coordination);
        var worldSize = coordination.WorldSize;
        var rank = coordination.Rank;
        ArgumentOutOfRangeException.ThrowIfLessThan(worldSize, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(worldSize, 99999);
        ArgumentOutOfRangeException.ThrowIfNegative(rank);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(rank, worldSize);
        Rank = rank;
        WorldSize = worldSize;
        CoordinationDirectory = "";
        Coordination = coordination;
    }

    /// <summary>
    /// How the workers coordinate: null (default) for completion-marker files in <see cref="CoordinationDirectory"/>,
    /// or an <see cref="IWorkerCoordination"/> such as <c>MpiCoordination</c> (set through
    /// <see cref="WorkerContext(IWorkerCoordination)"/>; nothing then polls the filesystem).
    /// </summary>
    public IWorkerCoordination? Coordination { get; }

    /// <summary>The coordination a save uses: <see cref="Coordination"/>, or the marker files.</summary>
    internal IWorkerCoordination EffectiveCoordination => Coordination ?? LazyInitializer.EnsureInitialized(ref _files, () => new FileSystemCoordination(this));

    private FileSystemCoordination? _files;

    /// <summary>This worker's rank (0 = chief).</summary>
    public int Rank { get; }

    /// <summary>Number of workers.</summary>
    public int WorldSize { get; }

    /// <summary>True for rank 0, which merges, publishes, updates the state file and prunes.</summary>
    public bool IsChief => Rank == 0;

    /// <summary>Absolute path of the shared coordination directory; empty when <see cref="Coordination"/> is set.</summary>
    public string CoordinationDirectory { get; }

    /// <summary>
    /// How long the chief waits for the workers' markers (non-chief workers wait up to twice this for the chief's
    /// verdict, which follows the chief's own wait). Default 5 minutes.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Not positive.</exception>
    public TimeSpan Timeout
    {
        get => _timeout;
        init
        {
            if (value <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(value), value, "The coordination timeout must be positive.");
            _timeout = value;
        }
    }

    /// <summary>
    /// Identifier of this run of the job, shared by its workers (letters, digits, <c>-</c>, <c>_</c>; at most 64), part
    /// of every marker name. Default <see langword="null"/> (markers named by the checkpoint only).
    /// </summary>
    /// <exception cref="ArgumentException">Empty, too long, or with other characters.</exception>
    public string? JobId
    {
        get => _jobId;
        init
        {
            if (value is not null && (value.Length is 0 or > 64 || !value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_')))
                throw new ArgumentException($"Job id '{value}' must be 1–64 ASCII letters, digits, '-' or '_'.", nameof(value));
            _jobId = value;
        }
    }

    /// <summary>Decides which worker writes each tensor. Default: a new <see cref="PlacementOwnership"/> (nothing placed: replicated state is written by the chief, slices of partitioned variables by the worker holding them).</summary>
    public IWorkerOwnership Ownership { get; init; } = new PlacementOwnership();

    /// <summary>
    /// Non-chief workers wait for the chief's verdict (published or aborted) before a save returns. Default
    /// <see langword="true"/>, so every worker's save returns only once the checkpoint is published and fails when it
    /// was aborted.
    /// </summary>
    public bool WaitForPublished { get; init; } = true;

    /// <summary>
    /// Optional observer of protocol milestones, for benchmarks and tracing: called synchronously on the saving thread
    /// with the milestone and <see cref="System.Diagnostics.Stopwatch.GetTimestamp"/> (a monotonic clock shared by the
    /// processes of one host). Must be fast and must not throw. Default null.
    /// </summary>
    public Action<CoordinationMilestone, long>? Milestones { get; init; }

    /// <summary>
    /// Reads the context from <see cref="RankVariable"/>, <see cref="WorldSizeVariable"/>,
    /// <see cref="CoordinationDirectoryVariable"/> and optionally <see cref="JobIdVariable"/> and
    /// <see cref="TimeoutVariable"/> (what <see cref="LocalWorkerLauncher"/> sets).
    /// </summary>
    /// <returns>The context, or <see langword="null"/> when the rank variable is not set (not a worker).</returns>
    /// <exception cref="FormatException">A variable is set but malformed, or the world size / directory is missing.</exception>
    public static WorkerContext? FromEnvironment()
    {
        var rankText = Environment.GetEnvironmentVariable(RankVariable);
        if (string.IsNullOrEmpty(rankText)) return null;
        var sizeText = Environment.GetEnvironmentVariable(WorldSizeVariable);
        var dir = Environment.GetEnvironmentVariable(CoordinationDirectoryVariable);
        if (!int.TryParse(rankText, NumberStyles.None, CultureInfo.InvariantCulture, out var rank)
            || !int.TryParse(sizeText, NumberStyles.None, CultureInfo.InvariantCulture, out var size) || string.IsNullOrEmpty(dir))
            throw new FormatException($"{RankVariable}='{rankText}', {WorldSizeVariable}='{sizeText}', {CoordinationDirectoryVariable}='{dir}': expected two integers and a directory.");
        var job = Environment.GetEnvironmentVariable(JobIdVariable);
        var timeoutText = Environment.GetEnvironmentVariable(TimeoutVariable);
        var context = new WorkerContext(rank, size, dir) { JobId = string.IsNullOrEmpty(job) ? null : job };
        if (!string.IsNullOrEmpty(timeoutText))
        {
            if (!double.TryParse(timeoutText, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) || seconds <= 0)
                throw new FormatException($"{TimeoutVariable}='{timeoutText}' is not a positive number of seconds.");
            context = context.With(timeout: TimeSpan.FromSeconds(seconds));
        }
        return context;
    }

    /// <summary>Returns a copy with some settings replaced (null keeps the current value).</summary>
    /// <param name="ownership">New ownership policy.</param>
    /// <param name="timeout">New timeout.</param>
    /// <param name="waitForPublished">New <see cref="WaitForPublished"/>.</param>
    /// <param name="milestones">New <see cref="Milestones"/> observer.</param>
    /// <returns>The copy.</returns>
    public WorkerContext With(IWorkerOwnership? ownership = null, TimeSpan? timeout = null, bool? waitForPublished = null,
        Action<CoordinationMilestone, long>? milestones = null) =>
        new(this, _state)
        {
            JobId = JobId,
            Ownership = ownership ?? Ownership,
            Timeout = timeout ?? Timeout,
            WaitForPublished = waitForPublished ?? WaitForPublished,
            Milestones = milestones ?? Milestones,
        };

    private WorkerContext(WorkerContext source, AttemptState state)
    {
        Rank = source.Rank;
        WorldSize = source.WorldSize;
        CoordinationDirectory = source.CoordinationDirectory;
        Coordination = source.Coordination;
        _files = source._files;
        _state = state;
    }

    /// <summary>The next round number (1, 2, …): every save attempt of this context and its copies, in call order.</summary>
    internal long NextRound() => Interlocked.Increment(ref _state.Rounds);

    /// <summary>The next attempt number for <paramref name="fullPrefix"/> (1 for the first save of it by this job).</summary>
    internal int NextAttempt(string fullPrefix)
    {
        lock (_state.Gate)
        {
            var n = _state.Attempts.GetValueOrDefault(fullPrefix) + 1;
            _state.Attempts[fullPrefix] = n;
            return n;
        }
    }

    /// <summary>Records the chief's newest verdict file and returns the previous one.</summary>
    internal string? ExchangeLastVerdict(string verdict)
    {
        lock (_state.Gate)
        {
            var previous = _state.LastVerdict;
            _state.LastVerdict = verdict;
            return previous;
        }
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"worker {Rank} of {WorldSize} ({(Coordination is null ? CoordinationDirectory : Coordination.GetType().Name)}{(JobId is null ? "" : ", job " + JobId)})";
}

/// <summary>Milestones of one multi-worker save attempt reported to <see cref="WorkerContext.Milestones"/>.</summary>
public enum CoordinationMilestone
{
    /// <summary>This worker's part is durable (data and index flushed, directory flushed); its report is about to be sent.</summary>
    PartDurable,

    /// <summary>Chief only: every report has arrived (the gather returned); merging starts.</summary>
    ReportsGathered,

    /// <summary>Chief only: the merged checkpoint is published (index renamed and flushed); the verdict is about to be shared.</summary>
    Published,

    /// <summary>This worker knows the verdict (the chief: after sharing it).</summary>
    VerdictKnown,
}

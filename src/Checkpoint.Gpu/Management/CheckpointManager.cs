using System.Globalization;
using System.Text.RegularExpressions;
using CheckpointGpu.Format;

namespace CheckpointGpu;

/// <summary>
/// Numbers, records and prunes the checkpoints of one <see cref="Checkpoint"/> in a directory (TF's
/// <c>tf.train.CheckpointManager</c>, <c>tensorflow/python/checkpoint/checkpoint_management.py</c>; spec §8).
/// </summary>
/// <remarks>
/// <para><b>Protocol of <see cref="Save"/>.</b> (1) with an interval, skip unless the step advanced enough;
/// (2) increment the save counter; (3) write <c>&lt;directory&gt;/&lt;name&gt;-&lt;n&gt;</c> completely (data files, then the
/// index, which is the commit point); (4) append it to the managed list and rewrite the <c>checkpoint</c> state file;
/// (5) sweep: delete the oldest managed checkpoints beyond <see cref="MaxToKeep"/> (or preserve one per
/// <see cref="KeepCheckpointEvery"/>); (6) rewrite the state file without the deleted ones. A crash at any point
/// leaves a state file that names only complete checkpoints.</para>
/// <para><b>Restarts.</b> The constructor recovers the managed list from the state file: entries with timestamps newer
/// than <c>last_preserved_timestamp</c> are managed (and may be deleted); older or untimestamped ones (written by
/// <see cref="Checkpoint.Save"/> or TF1's <c>Saver</c>) are never deleted and drop out of the state at the next save.
/// Only <c>&lt;prefix&gt;.index</c> and <c>&lt;prefix&gt;.data-?????-of-?????</c> of managed entries are ever deleted.</para>
/// <para>Thread-safety: not thread-safe.</para>
/// </remarks>
public sealed class CheckpointManager
{
    private readonly object _bookkeeping = new();

    private static readonly Regex s_dataSuffix = new(@"^\.data-\d{5}-of-\d{5}$", RegexOptions.CultureInvariant);
    private readonly List<(string Path, double Timestamp)> _maybeDelete = [];
    private readonly string _prefixBase;
    private readonly Func<long>? _stepCounter;
    private readonly Action? _initialize;
    private readonly TimeProvider _time;
    private double _lastPreservedTimestamp;
    private long? _lastCheckpointStep;

    /// <summary>Creates a manager and recovers its state from <c>&lt;directory&gt;/checkpoint</c>.</summary>
    /// <param name="checkpoint">The checkpoint to save and restore; referenced, not owned.</param>
    /// <param name="directory">Where checkpoints and the state file live (created on first save).</param>
    /// <param name="maxToKeep">How many managed checkpoints to keep; <see langword="null"/> keeps all (never deletes).</param>
    /// <param name="keepCheckpointEvery">Additionally preserve (never delete) one checkpoint per this interval; <see langword="null"/> for none (TF's <c>keep_checkpoint_every_n_hours</c>).</param>
    /// <param name="checkpointName">Prefix name; checkpoints are <c>&lt;directory&gt;/&lt;name&gt;-&lt;n&gt;</c>. Default <c>ckpt</c>.</param>
    /// <param name="stepCounter">Reads the training step; required with <paramref name="checkpointInterval"/>.</param>
    /// <param name="checkpointInterval">Minimum number of steps between saves; <see langword="null"/> saves every time.</param>
    /// <param name="initialize">Called by <see cref="RestoreOrInitialize"/> when there is no checkpoint.</param>
    /// <param name="timeProvider">Clock for timestamps; default <see cref="TimeProvider.System"/>.</param>
    /// <exception cref="ArgumentNullException"><paramref name="checkpoint"/> or <paramref name="directory"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxToKeep"/> ≤ 0, or <paramref name="keepCheckpointEvery"/> or <paramref name="checkpointInterval"/> is not positive.</exception>
    /// <exception cref="ArgumentException"><paramref name="checkpointInterval"/> without <paramref name="stepCounter"/>, or an empty name.</exception>
    public CheckpointManager(Checkpoint checkpoint, string directory, int? maxToKeep, TimeSpan? keepCheckpointEvery = null,
        string checkpointName = "ckpt", Func<long>? stepCounter = null, long? checkpointInterval = null, Action? initialize = null,
        TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentException.ThrowIfNullOrEmpty(checkpointName);
        if (maxToKeep is { } max) ArgumentOutOfRangeException.ThrowIfNegativeOrZero(max, nameof(maxToKeep));
        if (keepCheckpointEvery is { } every && every <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(keepCheckpointEvery), every, "Must be positive.");
        if (checkpointInterval is { } interval)
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(interval, nameof(checkpointInterval));
            if (stepCounter is null) throw new ArgumentException("A step counter is required when a checkpoint interval is set.", nameof(stepCounter));
        }
        Checkpoint = checkpoint;
        Directory = directory;
        MaxToKeep = maxToKeep;
        KeepCheckpointEvery = keepCheckpointEvery;
        CheckpointName = checkpointName;
        CheckpointInterval = checkpointInterval;
        _stepCounter = stepCounter;
        _initialize = initialize;
        _time = timeProvider ?? TimeProvider.System;
        _prefixBase = Path.Combine(directory, checkpointName);
        Recover();
    }

    /// <summary>The managed checkpoint.</summary>
    public Checkpoint Checkpoint { get; }

    /// <summary>Directory of the checkpoints and the state file.</summary>
    public string Directory { get; }

    /// <summary>Managed checkpoints to keep, or <see langword="null"/> to keep all.</summary>
    public int? MaxToKeep { get; }

    /// <summary>Preserve one checkpoint per this interval (never deleted), or <see langword="null"/>.</summary>
    public TimeSpan? KeepCheckpointEvery { get; }

    /// <summary>Prefix name (default <c>ckpt</c>).</summary>
    public string CheckpointName { get; }

    /// <summary>Minimum steps between saves, or <see langword="null"/>.</summary>
    public long? CheckpointInterval { get; }

    /// <summary>The newest checkpoint prefix recorded (from the state file at construction, or the last save); not checked for existence.</summary>
    public string? LatestCheckpoint { get; private set; }

    /// <summary>Managed checkpoint prefixes, oldest first (preserved ones excluded).</summary>
    public IReadOnlyList<string> Checkpoints => _maybeDelete.Select(e => e.Path).ToArray();

    /// <summary>
    /// TF's <c>tf.train.latest_checkpoint(dir)</c>: the prefix named by <c>&lt;directory&gt;/checkpoint</c>, only if its
    /// <c>.index</c> exists.
    /// </summary>
    /// <param name="directory">Directory holding the state file.</param>
    /// <param name="prefix">The absolute prefix, or <see langword="null"/>.</param>
    /// <returns>True when a valid, existing checkpoint is named.</returns>
    public static bool TryGetLatestCheckpoint(string directory, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? prefix)
    {
        prefix = CheckpointStateFile.LatestCheckpoint(directory);
        return prefix is not null;
    }

    private double Now() => (_time.GetUtcNow() - DateTimeOffset.UnixEpoch).TotalSeconds;

    private void Recover()
    {
        var now = Now();
        if (!CheckpointStateFile.TryRead(Directory, out var state))
        {
            LatestCheckpoint = null;
            // Slightly in the past, so a quickly re-created manager still preserves its first checkpoint.
            _lastPreservedTimestamp = now - 1;
            return;
        }
        LatestCheckpoint = CheckpointStateFile.ResolvePath(Directory, state.ModelCheckpointPath);
        _lastPreservedTimestamp = state.LastPreservedTimestamp ?? 0;
        // The clock went backwards: clamp, so old checkpoints are not deleted by mistake.
        if (now < _lastPreservedTimestamp) _lastPreservedTimestamp = now;
        var paths = state.AllModelCheckpointPaths;
        var stamps = state.AllModelCheckpointTimestamps.Count > 0
            ? state.AllModelCheckpointTimestamps
            : Enumerable.Repeat(_lastPreservedTimestamp, paths.Count).ToArray();
        for (var i = 0; i < Math.Min(paths.Count, stamps.Count); i++)
        {
            var timestamp = Math.Min(stamps[i], now);
            if (timestamp > _lastPreservedTimestamp)
                Upsert(CheckpointStateFile.ResolvePath(Directory, paths[i]), timestamp);
        }
    }

    /// <summary>
    /// Saves a new checkpoint if the interval allows: increments the save counter, writes
    /// <c>&lt;directory&gt;/&lt;name&gt;-&lt;n&gt;</c>, records it, and deletes old ones (see the remarks for the order).
    /// </summary>
    /// <param name="checkpointNumber">The number in the prefix; default the new save-counter value.</param>
    /// <param name="checkInterval">When false, save even if fewer than <see cref="CheckpointInterval"/> steps passed (but not twice at the same step).</param>
    /// <param name="options">Options; frozen by this call.</param>
    /// <returns>The prefix written, or <see langword="null"/> when skipped by the interval.</returns>
    /// <exception cref="IOException">Writing failed; the state file still names only complete checkpoints.</exception>
    public string? Save(long? checkpointNumber = null, bool checkInterval = true, CheckpointOptions? options = null)
    {
        if (NextPrefix(checkpointNumber, checkInterval) is not { } prefix) return null;
        Checkpoint.WriteUnnumbered(prefix, options);
        lock (_bookkeeping)
        {
            if (options?.MultiWorker is { IsChief: false }) Track(prefix);
            else RecordAndSweep(prefix);
        }
        return prefix;
    }

    /// <summary>Non-chief workers of a multi-worker save track the checkpoint but never write the state file or delete files.</summary>
    private void Track(string prefix)
    {
        Upsert(prefix, Now());
        LatestCheckpoint = prefix;
    }

    /// <summary>
    /// Restores <see cref="LatestCheckpoint"/> if there is one (and returns it), otherwise calls the initializer and
    /// returns <see langword="null"/> (TF's <c>restore_or_initialize</c>).
    /// </summary>
    /// <returns>The restored prefix, or <see langword="null"/>.</returns>
    /// <exception cref="FileNotFoundException">The recorded checkpoint's files are missing.</exception>
    public string? RestoreOrInitialize()
    {
        if (LatestCheckpoint is not null)
        {
            Checkpoint.Restore(LatestCheckpoint);
            if (CheckpointInterval is not null) _lastCheckpointStep = _stepCounter!();
            return LatestCheckpoint;
        }
        _initialize?.Invoke();
        return null;
    }

    /// <summary>
    /// Asynchronous <see cref="Save"/>: queues the checkpoint on the IO pipeline and returns its handle, or
    /// <see langword="null"/> when the checkpoint interval says not yet. The state file is written and old checkpoints are
    /// deleted after the new checkpoint is durable, in save order (the record/sweep/record sequence of <see cref="Save"/>).
    /// </summary>
    /// <param name="checkpointNumber">Number for the prefix; <see langword="null"/> uses the incremented save counter.</param>
    /// <param name="checkInterval">When false, saves even if the interval has not passed.</param>
    /// <param name="options">Options; <see cref="CheckpointOptions.Pipeline"/> picks the IO device.</param>
    /// <param name="cancellationToken">Cancels the save.</param>
    /// <returns>The save's handle (<c>Handle.CheckpointPrefix</c> is the checkpoint's prefix; in a multi-worker save
    /// <c>Handle.Prefix</c> is this worker's part and <c>Completion</c> means the chief published the merged checkpoint),
    /// or null when skipped.</returns>
    /// <remarks>Not thread-safe; await each call before the next. The manager's bookkeeping runs on the pipeline's
    /// completion path and is serialized with the synchronous methods by a lock.</remarks>
    public ValueTask<Pipeline.SaveHandle?> SaveAsync(long? checkpointNumber = null, bool checkInterval = true, CheckpointOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Checkpoint.ThrowIfQueuingAsyncSave();
        if (NextPrefix(checkpointNumber, checkInterval) is not { } prefix) return ValueTask.FromResult<Pipeline.SaveHandle?>(null);
        return Queue(prefix);

        async ValueTask<Pipeline.SaveHandle?> Queue(string prefix) =>
            await Checkpoint.WriteUnnumberedAsync(prefix, options, (path, _) =>
            {
                lock (_bookkeeping)
                {
                    if (options?.MultiWorker is { IsChief: false }) Track(path);
                    else RecordAndSweep(path);
                }
                return ValueTask.CompletedTask;
            }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Applies the checkpoint interval, increments the save counter and returns the next prefix, or null to skip.</summary>
    private string? NextPrefix(long? checkpointNumber, bool checkInterval)
    {
        if (CheckpointInterval is { } interval)
        {
            var step = _stepCounter!();
            if (_lastCheckpointStep is { } last)
            {
                if (step == last) return null;
                if (checkInterval && step < last + interval) return null;
            }
            _lastCheckpointStep = step;
        }
        var counter = Checkpoint.IncrementSaveCounter();
        var number = checkpointNumber ?? counter;
        return $"{_prefixBase}-{number.ToString(CultureInfo.InvariantCulture)}";
    }

    private void RecordAndSweep(string savePath)
    {
        // An overwritten checkpoint moves to the newest position.
        Upsert(savePath, Now());
        LatestCheckpoint = savePath;
        // Record first: a crash while deleting still leaves the new checkpoint in the state file.
        RecordState();
        Sweep();
        RecordState();
    }

    private void Upsert(string path, double timestamp)
    {
        _maybeDelete.RemoveAll(e => string.Equals(e.Path, path, StringComparison.Ordinal));
        _maybeDelete.Add((path, timestamp));
    }

    private void RecordState()
    {
        var state = new CheckpointState(LatestCheckpoint!, _maybeDelete.Select(e => Relative(e.Path)).ToArray(),
            _maybeDelete.Select(e => e.Timestamp).ToArray(), _lastPreservedTimestamp);
        CheckpointStateFile.Write(Directory, state with { ModelCheckpointPath = Relative(LatestCheckpoint!) });
    }

    private string Relative(string path) => Path.GetRelativePath(Path.GetFullPath(Directory), Path.GetFullPath(path));

    private void Sweep()
    {
        if (MaxToKeep is not { } max) return;   // keep everything; last-preserved time unchanged
        while (_maybeDelete.Count > max)
        {
            var (path, timestamp) = _maybeDelete[0];
            _maybeDelete.RemoveAt(0);
            if (KeepCheckpointEvery is { } every && timestamp - every.TotalSeconds >= _lastPreservedTimestamp)
            {
                // Preserved forever, and no longer referenced (keeps the state file bounded).
                _lastPreservedTimestamp = timestamp;
                continue;
            }
            DeleteCheckpointFiles(path);
        }
    }

    private static void DeleteCheckpointFiles(string prefix)
    {
        TryDelete(BundleNaming.IndexFile(prefix));
        var dir = Path.GetDirectoryName(Path.GetFullPath(prefix))!;
        var name = Path.GetFileName(prefix);
        if (!System.IO.Directory.Exists(dir)) return;
        foreach (var file in System.IO.Directory.EnumerateFiles(dir))
        {
            var fileName = Path.GetFileName(file);
            // Literal prefix match (no globbing of the user's prefix), then TF's ".data-?????-of-?????".
            if (fileName.StartsWith(name, StringComparison.Ordinal) && s_dataSuffix.IsMatch(fileName[name.Length..]))
                TryDelete(file);
        }
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}

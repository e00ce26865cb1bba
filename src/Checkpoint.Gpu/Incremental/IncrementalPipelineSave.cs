using CheckpointGpu.Format;

namespace CheckpointGpu.Incremental;

/// <summary>An incremental save requested through the IO pipeline (asynchronous, or multi-worker): the manager's options and history.</summary>
/// <param name="Options">The manager's <see cref="IncrementalSaveOptions"/>.</param>
/// <param name="History">The manager's history (updated when the save is planned).</param>
/// <param name="OnReport">Receives the save's report after its files are published (on the pipeline's completion path).</param>
internal sealed record IncrementalRequest(IncrementalSaveOptions Options, IncrementalHistory History, Action<IncrementalSaveReport>? OnReport);

/// <summary>
/// One incremental save through the IO pipeline (issue 14, asynchronous and multi-worker saves). Planned on the caller's
/// thread: the tracked state of every variable is read at the call, the data files of the previous checkpoint made only of
/// unchanged tensors are chosen from the previous save's recorded layout (the previous save may still be queued), and
/// the rest ("fresh" units) go to the pipeline as a temporary part grouped by change history. After that part commits,
/// <see cref="CommitAsync"/> hard-links (or copies) the chosen files as further parts and merges everything into
/// <see cref="OutputPrefix"/> (the checkpoint, or a multi-worker save's part) with <see cref="TensorBundle.Merge(IReadOnlyList{TensorBundlePartIndex}, string, TensorBundleMergeOptions?)"/>.
/// </summary>
/// <remarks>
/// <para><b>Snapshot semantics.</b> A linked tensor is unchanged between the previous save's call and this call (same
/// variable object, same <see cref="Variable.ModificationVersion"/>, same hash when hashing applies), and the previous
/// checkpoint holds its bytes as of the previous call — so it holds them as of this call: a write after this call cannot
/// leak in (those bytes are never read from the device), and a write before it bumps the version, so the tensor is
/// written fresh. Fresh tensors follow the pipeline's ordinary contract (<see cref="TrackableSaver.WaitUntilStagedAsync"/>).</para>
/// <para><b>Base failure.</b> Saves commit in queue order, so the previous save has finished when this one links. If it
/// failed (or was cancelled), the bytes this save skipped exist nowhere: this save fails too (an <see cref="IOException"/>
/// naming the base), and the next save planned after the failure is known is a full one.</para>
/// </remarks>
internal sealed class IncrementalPipelineSave
{
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly IncrementalRequest _request;
    private readonly string _checkpointPrefix;
    private readonly string _workDir;
    private readonly string? _basePrefix;
    private readonly IncrementalPipelineSave? _base;
    private readonly List<HashSet<string>> _reused;
    private readonly bool _hasGraph;
    private IncrementalSaveReport? _report;

    private IncrementalPipelineSave(IncrementalRequest request, string outputPrefix, string checkpointPrefix, string workDir, string? basePrefix,
        IncrementalPipelineSave? baseSave, List<HashSet<string>> reused, IReadOnlyList<TrackableSaver.SaveUnit> fresh, IShardingPolicy policy, bool hasGraph)
    {
        _request = request;
        OutputPrefix = outputPrefix;
        _checkpointPrefix = checkpointPrefix;
        _workDir = workDir;
        _basePrefix = basePrefix;
        _base = baseSave;
        _reused = reused;
        FreshUnits = fresh;
        Policy = policy;
        _hasGraph = hasGraph;
    }

    /// <summary>Where the merged result goes: the checkpoint prefix, or a multi-worker save's part prefix.</summary>
    public string OutputPrefix { get; }

    /// <summary>The units the pipeline writes (changed tensors, untracked state, unchanged tensors from mixed files).</summary>
    public IReadOnlyList<TrackableSaver.SaveUnit> FreshUnits { get; }

    /// <summary>The pipeline part's sharding: stable (unchanged) tensors in one data file, the rest and the object graph in another.</summary>
    public IShardingPolicy Policy { get; }

    /// <summary>The temporary part the pipeline writes.</summary>
    public string FreshPrefix => Path.Combine(_workDir, "part-00000-of-00001");

    /// <summary>Completes when this save is published (or faults when it failed): the next incremental save's base check.</summary>
    public Task Done => _done.Task;

    /// <summary>
    /// Plans the save of <paramref name="units"/> (and the object graph when <paramref name="hasGraph"/>) into
    /// <paramref name="outputPrefix"/>, and records it in the history as the next save's base.
    /// </summary>
    /// <param name="request">Options and history.</param>
    /// <param name="snapshot">The object graph snapshot of this save (maps keys to variables).</param>
    /// <param name="units">The units this process writes (all of them, or a worker's own).</param>
    /// <param name="hasGraph">The object graph is written in this output (single process, or the chief's part).</param>
    /// <param name="outputPrefix">The checkpoint prefix, or the worker's part prefix.</param>
    /// <param name="checkpointPrefix">The checkpoint's prefix (the next save links from its data files).</param>
    /// <param name="workDir">A directory of this save's own for its temporary parts (removed after the merge).</param>
    public static IncrementalPipelineSave Plan(IncrementalRequest request, ObjectGraphSnapshot snapshot, IReadOnlyList<TrackableSaver.SaveUnit> units,
        bool hasGraph, string outputPrefix, string checkpointPrefix, string workDir)
    {
        var history = request.History;
        var variables = new Dictionary<string, Variable>(StringComparer.Ordinal);
        foreach (var t in snapshot.Tensors)
            if (t.Attribute is VariableSaveable { Variable: var v }) variables[t.Key] = v;

        // 1. The tracked state of every variable, at the call (before any byte of this save moves).
        var current = new Dictionary<string, TrackedState>(StringComparer.Ordinal);
        var unchanged = new HashSet<string>(StringComparer.Ordinal);
        foreach (var unit in units)
        {
            if (!variables.TryGetValue(unit.Key, out var variable)) continue;
            var version = variable.ModificationVersion;
            ulong? hash = variable.ContentHashing || request.Options.HashAllVariables ? variable.ComputeContentHash() : null;
            var state = new TrackedState(version, hash);
            current[unit.Key] = state;
            if (history.Tensors.TryGetValue(unit.Key, out var previous) && previous == state) unchanged.Add(unit.Key);
        }

        // 2. The previous checkpoint's data files made only of unchanged tensors. Its layout is the one recorded when it was
        // planned (it may still be queued); a base already known to have failed, or another prefix, means a full save.
        var basePrefix = history.Prefix;
        var baseSave = history.PendingSave;
        // A base still queued: the layout recorded when it was planned. A finished one: its index, read now (so a checkpoint
        // deleted or replaced from outside means a full save rather than a failed one).
        var layout = baseSave is { Done.IsCompleted: false } ? history.Layout : basePrefix is null ? null : LayoutFromIndex(basePrefix);
        if (basePrefix is null || layout is null || baseSave is { Done.IsFaulted: true } or { Done.IsCanceled: true }
            || string.Equals(Path.GetFullPath(basePrefix), Path.GetFullPath(checkpointPrefix), StringComparison.Ordinal))
        {
            basePrefix = null;
            layout = [];
        }
        var reused = layout.Where(g => g.Count > 0 && g.All(unchanged.Contains)).ToList();
        var reusedKeys = new HashSet<string>(reused.SelectMany(g => g), StringComparer.Ordinal);

        // 3. The rest, grouped by history: unchanged ("stable", linkable next time) and changed ("volatile", with the graph).
        var fresh = new List<TrackableSaver.SaveUnit>(units.Count);
        var stable = new HashSet<string>(StringComparer.Ordinal);
        var volatileKeys = new HashSet<string>(StringComparer.Ordinal);
        foreach (var unit in units)
        {
            if (reusedKeys.Contains(unit.Key)) continue;
            fresh.Add(unit);
            (unchanged.Contains(unit.Key) ? stable : volatileKeys).Add(unit.Key);
        }
        if (hasGraph) volatileKeys.Add(CheckpointKeys.ObjectGraph);

        // The layout this save will publish (one key set per data file), for the next save.
        var newLayout = new List<HashSet<string>>(reused);
        if (stable.Count > 0 && volatileKeys.Count > 0) newLayout.AddRange([stable, volatileKeys]);
        else if (stable.Count + volatileKeys.Count > 0) newLayout.Add([.. stable, .. volatileKeys]);

        var save = new IncrementalPipelineSave(request, outputPrefix, checkpointPrefix, workDir, basePrefix, baseSave, reused, fresh,
            new IncrementalBundleSave.HistoryShardingPolicy(stable), hasGraph);
        history.Prefix = checkpointPrefix;
        history.Tensors = current;
        history.Layout = newLayout;
        history.PendingSave = save;
        return save;
    }

    /// <summary>One key set per data file of a committed plain checkpoint; null when it cannot be read or is not plain.</summary>
    private static List<HashSet<string>>? LayoutFromIndex(string prefix)
    {
        try
        {
            var (header, entries) = TensorBundleIndex.Read(prefix);
            if (header.Producer != BundleHeader.CurrentVersion || header.MinConsumer != 0 || header.BadConsumers.Count != 0) return null;
            return entries.Where(e => !e.IsPartitioned).GroupBy(e => e.ShardId)
                .Select(g => new HashSet<string>(g.Select(e => e.IsSliceEntry ? "\0slice" : e.Key), StringComparer.Ordinal)).ToList();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CheckpointFormatException)
        {
            return null;   // pruned or damaged from outside: write everything
        }
    }

    /// <summary>True when the pipeline has nothing to write (every tensor linked, no object graph here).</summary>
    public bool FreshIsEmpty(bool hasGraph) => FreshUnits.Count == 0 && !hasGraph;

    /// <summary>Creates the work directory (before the pipeline writes the fresh part into it).</summary>
    public void PrepareWorkDirectory()
    {
        if (Directory.Exists(_workDir)) Directory.Delete(_workDir, recursive: true);
        Directory.CreateDirectory(_workDir);
    }

    /// <summary>Ties <see cref="Done"/> to the queued save's completion (a failure or cancellation before the commit callback).</summary>
    public void Attach(Task completion) =>
        _ = completion.ContinueWith(static (t, state) =>
        {
            var self = (IncrementalPipelineSave)state!;
            if (t.IsFaulted) self._done.TrySetException(t.Exception!.InnerExceptions);
            else if (t.IsCanceled) self._done.TrySetCanceled();
            else self._done.TrySetResult();
        }, this, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

    /// <summary>The save failed (never queued, or failed in the pipeline): the next save must not link from it.</summary>
    public void Fail(Exception error)
    {
        _done.TrySetException(error);
        Cleanup();
    }

    /// <summary>
    /// After the fresh part committed (or with nothing fresh to write): links the reused data files of the base checkpoint
    /// and merges them with the fresh part into <see cref="OutputPrefix"/>. Blocking file-system work runs on Format's
    /// <see cref="BlockingIOThreads.Shared"/>.
    /// </summary>
    /// <param name="hasFreshPart">The pipeline wrote <see cref="FreshPrefix"/>.</param>
    /// <param name="cancellationToken">Cancels waiting for the base save.</param>
    /// <exception cref="IOException">The base save failed, or its files no longer hold the tensors this save skipped.</exception>
    public async ValueTask CommitAsync(bool hasFreshPart, CancellationToken cancellationToken)
    {
        if (_reused.Count > 0 && _base is not null)
        {
            try
            {
                await _base.Done.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                throw new IOException($"Incremental checkpoint {_checkpointPrefix}: its base checkpoint {_basePrefix} failed, and this save " +
                    "skipped the device copies of tensors unchanged since it; nothing was published (the next save writes everything).", ex);
            }
        }
        _report = await BlockingIOThreads.Shared.Run(() => Merge(hasFreshPart), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The whole save succeeded (a multi-worker save: the merged checkpoint is published): reports it and lets the next save link from it.</summary>
    public void Complete()
    {
        _done.TrySetResult();
        if (_report is not null) _request.OnReport?.Invoke(_report);
    }

    private IncrementalSaveReport Merge(bool hasFreshPart)
    {
        var history = _request.History;
        var parts = new List<TensorBundlePartIndex>(1 + _reused.Count);
        long bytesWritten = 0;
        int written = 0, linked = 0, copied = 0, reusedTensors = 0;
        long bytesReused = 0;
        try
        {
            if (hasFreshPart)
            {
                var freshPart = TensorBundlePartIndex.Read(FreshPrefix);
                parts.Add(freshPart);
                written = freshPart.Header.ShardCount;
                for (var s = 0; s < written; s++) bytesWritten += new FileInfo(BundleNaming.DataFile(FreshPrefix, s, written)).Length;
            }
            if (_reused.Count > 0)
            {
                var (header, entries) = TensorBundleIndex.Read(_basePrefix!);
                var byKey = entries.ToDictionary(e => e.Key, StringComparer.Ordinal);
                var byShard = entries.Where(e => !e.IsPartitioned).ToLookup(e => e.ShardId);
                for (var k = 0; k < _reused.Count; k++)
                {
                    var group = _reused[k];
                    var shard = byKey.TryGetValue(group.First(), out var first) ? first.ShardId : -1;
                    var inShard = byShard[shard].ToArray();
                    if (shard < 0 || inShard.Length != group.Count || inShard.Any(e => e.IsSliceEntry || !group.Contains(e.Key)))
                        throw new IOException($"Incremental checkpoint {_checkpointPrefix}: the data file of its base {_basePrefix} holding " +
                            $"'{group.First()}' no longer holds exactly the {group.Count} unchanged tensor(s) this save skipped (changed from outside?); nothing was published.");
                    var source = BundleNaming.DataFile(_basePrefix!, shard, header.ShardCount);
                    var partPrefix = Path.Combine(_workDir, $"part-{k + 1:D5}-of-{_reused.Count + 1:D5}");
                    var target = BundleNaming.DataFile(partPrefix, 0, 1);
                    string? error = null;
                    if (!_request.Options.DisableHardLinks && HardLinks.TryCreate(source, target, out error))
                    {
                        linked++;
                    }
                    else
                    {
                        if (File.Exists(target)) File.Delete(target);
                        if (!history.CopyNoticeLogged)
                        {
                            history.CopyNoticeLogged = true;
                            _request.Options.Log?.WriteLine($"Checkpoint.Gpu: cannot hard-link unchanged data files into '{Path.GetDirectoryName(Path.GetFullPath(_checkpointPrefix))}' " +
                                $"({error ?? "hard links disabled"}); copying them instead (no device reads, but the bytes are written again).");
                        }
                        IncrementalBundleSave.CopyDurably(source, target);
                        copied++;
                    }
                    bytesReused += new FileInfo(source).Length;
                    reusedTensors += inShard.Length;
                    parts.Add(new TensorBundlePartIndex(partPrefix, header with { ShardCount = 1 }, inShard.Select(e => e with { ShardId = 0 }).ToArray()));
                }
            }
            TensorBundle.Merge(parts, OutputPrefix, new TensorBundleMergeOptions { DeleteOldDirectories = true });
        }
        finally
        {
            Cleanup();
        }
        return new IncrementalSaveReport(_checkpointPrefix, _reused.Count > 0 ? _basePrefix : null, written, linked, copied, bytesWritten, bytesReused,
            FreshUnits.Count + (_hasGraph ? 1 : 0), reusedTensors);
    }

    private void Cleanup()
    {
        try { if (Directory.Exists(_workDir)) Directory.Delete(_workDir, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}

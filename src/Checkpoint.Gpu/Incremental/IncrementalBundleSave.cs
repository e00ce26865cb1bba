using CheckpointGpu.Format;

namespace CheckpointGpu.Incremental;

/// <summary>A tracked tensor's state at a save: its variable's modification version and, when hashing applies, its content hash.</summary>
internal readonly record struct TrackedState(long Version, ulong? Hash);

/// <summary>What a manager remembers of its previous incremental save (in memory only).</summary>
internal sealed class IncrementalHistory
{
    /// <summary>The previous checkpoint's prefix, or null before the first save.</summary>
    public string? Prefix { get; set; }

    /// <summary>Tracked state per checkpoint key at the previous save (variables only).</summary>
    public Dictionary<string, TrackedState> Tensors { get; set; } = new(StringComparer.Ordinal);

    /// <summary>
    /// The previous checkpoint's data files as key sets, recorded when it was planned through the pipeline (it may still
    /// be queued); null after a synchronous save (then its index is read).
    /// </summary>
    public List<HashSet<string>>? Layout { get; set; }

    /// <summary>The previous save when it went through the pipeline (its outcome decides whether linking from it is possible).</summary>
    public IncrementalPipelineSave? PendingSave { get; set; }

    /// <summary>The copy-fallback notice was already logged.</summary>
    public bool CopyNoticeLogged { get; set; }
}

/// <summary>
/// Writes one LZ4-compressed incremental checkpoint (plain ones go through the pipeline: <see cref="IncrementalPipelineSave"/>;
/// see <see cref="IncrementalSaveOptions"/>): decides which previous data files can be
/// reused, writes the rest as a temporary part bundle through the ordinary bundle writer, hard-links (or copies) the
/// reused files as further parts, and publishes them with <see cref="TensorBundle.Merge(IReadOnlyList{TensorBundlePartIndex}, string, TensorBundleMergeOptions?)"/>,
/// whose protocol (data files renamed and the directory flushed, then the index written atomically; the index rename is
/// the commit point) is the same one a multi-worker save uses.
/// </summary>
/// <remarks>
/// Ordering: each variable's version (and hash) is read before any byte of the save is copied from the device, so a
/// write racing with the save can only make the next save rewrite the tensor, never skip it. Temporary parts live under
/// <c>&lt;prefix&gt;_temp/part-NNNNN-of-NNNNN*</c>, the names <see cref="Pipeline.CheckpointDebris"/> removes after a crash.
/// </remarks>
internal static class IncrementalBundleSave
{
    public static IncrementalSaveReport Write(string prefix, ObjectGraphSnapshot snapshot, byte[] graphBytes, CheckpointOptions options,
        IncrementalSaveOptions incremental, IncrementalHistory history)
    {
        var units = TrackableSaver.BuildUnits(snapshot);
        var tensors = snapshot.Tensors;

        // 1. The tracked state of every variable, before any byte moves.
        var current = new TrackedState?[units.Count];
        var unchanged = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < units.Count; i++)
        {
            if (tensors[i].Attribute is not VariableSaveable { Variable: var variable }) continue;
            var version = variable.ModificationVersion;
            ulong? hash = variable.ContentHashing || incremental.HashAllVariables ? variable.ComputeContentHash() : null;
            var state = new TrackedState(version, hash);
            current[i] = state;
            if (history.Tensors.TryGetValue(units[i].Key, out var previous) && previous == state) unchanged.Add(units[i].Key);
        }

        // 2. Previous data files made only of unchanged tensors.
        var fullPrefix = Path.GetFullPath(prefix);
        var reusable = history.Prefix is { } prev && unchanged.Count > 0 && !string.Equals(Path.GetFullPath(prev), fullPrefix, StringComparison.Ordinal)
            ? FindReusableShards(prev, unchanged, options.Compression is null ? BundleHeader.CurrentVersion : BundleHeader.CompressedVersion)
            : [];
        var reusedKeys = new HashSet<string>(reusable.SelectMany(s => s.Entries.Select(e => e.Key)), StringComparer.Ordinal);

        // 3. The rest, grouped by history: unchanged ("stable", linkable next time) and changed ("volatile", with the graph).
        var fresh = new List<TrackableSaver.SaveUnit>(units.Count);
        var stableKeys = new HashSet<string>(StringComparer.Ordinal);
        foreach (var unit in units)
        {
            if (reusedKeys.Contains(unit.Key)) continue;
            fresh.Add(unit);
            if (unchanged.Contains(unit.Key)) stableKeys.Add(unit.Key);
        }

        var tempDir = prefix + "_temp";
        var partCount = 1 + reusable.Count;
        var report = (Written: 0, Linked: 0, Copied: 0, BytesWritten: 0L, BytesReused: 0L);
        try
        {
            if (Directory.Exists(tempDir)) Directory.Delete(tempDir, recursive: true);
            Directory.CreateDirectory(tempDir);
            var freshPrefix = Path.Combine(tempDir, PartName(0, partCount));
            // The part's index is only read back and then replaced by the merged one, so only its data files are made
            // durable (one fsync each) before the merge publishes them.
            TrackableSaver.WriteUnits(freshPrefix, fresh, graphBytes, new HistoryShardingPolicy(stableKeys), options.Compression, flushToDisk: false);
            var freshPart = TensorBundlePartIndex.Read(freshPrefix);
            report.Written = freshPart.Header.ShardCount;
            for (var s = 0; s < freshPart.Header.ShardCount; s++)
            {
                var dataFile = BundleNaming.DataFile(freshPrefix, s, freshPart.Header.ShardCount);
                using (var fs = new FileStream(dataFile, FileMode.Open, FileAccess.ReadWrite, FileShare.None)) fs.Flush(flushToDisk: true);
                report.BytesWritten += new FileInfo(dataFile).Length;
            }

            var parts = new List<TensorBundlePartIndex>(partCount) { freshPart };
            for (var k = 0; k < reusable.Count; k++)
            {
                var shard = reusable[k];
                var partPrefix = Path.Combine(tempDir, PartName(k + 1, partCount));
                var target = BundleNaming.DataFile(partPrefix, 0, 1);
                string? error = null;
                if (!incremental.DisableHardLinks && HardLinks.TryCreate(shard.DataFile, target, out error))
                {
                    report.Linked++;
                }
                else
                {
                    if (File.Exists(target)) File.Delete(target);
                    if (!history.CopyNoticeLogged)
                    {
                        history.CopyNoticeLogged = true;
                        incremental.Log?.WriteLine($"Checkpoint.Gpu: cannot hard-link unchanged data files into '{Path.GetDirectoryName(fullPrefix)}' " +
                            $"({error ?? "hard links disabled"}); copying them instead (no device reads, but the bytes are written again).");
                    }
                    CopyDurably(shard.DataFile, target);
                    report.Copied++;
                }
                report.BytesReused += shard.Length;
                parts.Add(new TensorBundlePartIndex(partPrefix, freshPart.Header with { ShardCount = 1 },
                    shard.Entries.Select(e => e with { ShardId = 0 }).ToArray()));
            }
            TensorBundle.Merge(parts, prefix, new TensorBundleMergeOptions { DeleteOldDirectories = true });
        }
        finally
        {
            // After a successful merge the directory is already gone; after a failure its leftovers go (the inputs of a
            // failed merge are moved back into it first, so nothing published is touched).
            try { if (Directory.Exists(tempDir)) Directory.Delete(tempDir, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }

        // 4. Remember this checkpoint as the base of the next one.
        var tracked = new Dictionary<string, TrackedState>(StringComparer.Ordinal);
        for (var i = 0; i < units.Count; i++)
            if (current[i] is { } state) tracked[units[i].Key] = state;
        history.Prefix = prefix;
        history.Tensors = tracked;
        history.Layout = null;
        history.PendingSave = null;
        return new IncrementalSaveReport(prefix, reusable.Count > 0 ? reusable[0].Prefix : null,
            report.Written, report.Linked, report.Copied, report.BytesWritten, report.BytesReused,
            fresh.Count + 1, units.Count - fresh.Count);
    }

    private static string PartName(int index, int count) => $"part-{index:D5}-of-{count:D5}";

    private sealed record ReusableShard(string Prefix, string DataFile, long Length, IReadOnlyList<BundleEntry> Entries);

    /// <summary>The previous checkpoint's data files whose every entry is an unchanged whole tensor; none when it cannot be read.</summary>
    private static List<ReusableShard> FindReusableShards(string previousPrefix, HashSet<string> unchanged, int version)
    {
        BundleHeader header;
        IReadOnlyList<BundleEntry> entries;
        try
        {
            (header, entries) = TensorBundleIndex.Read(previousPrefix);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CheckpointFormatException)
        {
            return [];   // pruned or damaged from outside: write everything
        }
        // Only files written under this save's header version are reused (the merged header comes from the fresh part):
        // a plain checkpoint never links compressed bytes, and the other way round.
        var minConsumer = version == BundleHeader.CurrentVersion ? 0 : BundleHeader.CompressedVersion;
        if (header.Producer != version || header.MinConsumer != minConsumer || header.BadConsumers.Count != 0) return [];
        var byShard = new Dictionary<int, List<BundleEntry>>();
        var disqualified = new HashSet<int>();
        foreach (var e in entries)
        {
            if (e.IsPartitioned) continue;   // payload-less; rewritten with its slices
            if (!byShard.TryGetValue(e.ShardId, out var list)) byShard[e.ShardId] = list = [];
            list.Add(e);
            if (e.IsSliceEntry || !unchanged.Contains(e.Key)) disqualified.Add(e.ShardId);
        }
        var result = new List<ReusableShard>();
        foreach (var (shard, list) in byShard.OrderBy(kv => kv.Key))
        {
            if (disqualified.Contains(shard)) continue;
            var file = BundleNaming.DataFile(previousPrefix, shard, header.ShardCount);
            var info = new FileInfo(file);
            if (!info.Exists || list.Any(e => e.Offset + e.StoredSize > info.Length)) continue;
            result.Add(new ReusableShard(previousPrefix, file, info.Length, list));
        }
        return result;
    }

    internal static void CopyDurably(string source, string target)
    {
        File.Copy(source, target, overwrite: false);
        using var fs = new FileStream(target, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
        fs.Flush(flushToDisk: true);
    }

    /// <summary>Stable (unchanged) tensors in shard 0, everything else and the object graph in the last shard.</summary>
    internal sealed class HistoryShardingPolicy(HashSet<string> stableKeys) : IShardingPolicy
    {
        public ShardAssignment AssignShards(IReadOnlyList<ShardableTensor> tensors)
        {
            var anyStable = false;
            var anyVolatile = false;
            foreach (var t in tensors)
            {
                if (stableKeys.Contains(t.Key)) anyStable = true;
                else anyVolatile = true;
            }
            if (!anyStable || !anyVolatile) return new ShardAssignment(1, new int[tensors.Count]);
            return new ShardAssignment(2, tensors.Select(t => stableKeys.Contains(t.Key) ? 0 : 1).ToArray());
        }
    }
}

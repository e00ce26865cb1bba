using CheckpointGpu.Format;

namespace CheckpointGpu.Pipeline;

/// <summary>
/// The steps after a save's commit point, shared by core (<c>Checkpoint.SaveAsync</c>, <c>CheckpointManager</c>)
/// and tests: publish the <c>checkpoint</c> state file atomically and durably, then (only then) delete old
/// checkpoints index-first. See the commit protocol on <see cref="CheckpointPipeline"/>.
/// </summary>
/// <remarks>Stateless and thread-safe; callers serialize updates of one directory (the pipeline's
/// <c>onCommitted</c> callbacks run in save order).</remarks>
public static class CheckpointCommit
{
    /// <summary>
    /// Replaces <c>&lt;directory&gt;/checkpoint</c> atomically (temporary file, flush, rename; see
    /// <see cref="CheckpointStateFile.Write"/>) and flushes the directory so the new name is durable.
    /// </summary>
    /// <param name="directory">Directory of the checkpoints.</param>
    /// <param name="state">The new state; its paths should name committed checkpoints only.</param>
    /// <param name="storage">Storage seam for the directory flush; <see cref="LocalShardStorage.Instance"/> when null.</param>
    /// <exception cref="ArgumentException">The state is invalid (empty model path).</exception>
    /// <exception cref="IOException">Writing, renaming or flushing failed; the previous state file is intact.</exception>
    public static void PublishState(string directory, CheckpointState state, IShardStorage? storage = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(state);
        CheckpointStateFile.Write(directory, state);
        (storage ?? LocalShardStorage.Instance).FlushDirectory(Path.GetFullPath(directory));
    }

    /// <summary>
    /// TF's <c>Checkpoint.save</c> state update: a state file naming only <paramref name="prefix"/> (relative to its
    /// directory), published with <see cref="PublishState"/>.
    /// </summary>
    /// <param name="prefix">A committed checkpoint prefix.</param>
    /// <param name="storage">Storage seam; local when null.</param>
    /// <exception cref="IOException">Publishing failed.</exception>
    public static void PublishLatest(string prefix, IShardStorage? storage = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        var full = Path.GetFullPath(prefix);
        var dir = Path.GetDirectoryName(full)!;
        PublishState(dir, new CheckpointState(Path.GetRelativePath(dir, full)), storage);
    }

    /// <summary>
    /// Deletes a checkpoint: the <c>.index</c> first (so a crash mid-way never leaves an index without its data),
    /// then its data files, then flushes the directory. Call only after the state file no longer names it.
    /// </summary>
    /// <param name="prefix">The checkpoint prefix.</param>
    /// <param name="storage">Storage seam; local when null.</param>
    /// <exception cref="IOException">A delete failed.</exception>
    public static void DeleteCheckpoint(string prefix, IShardStorage? storage = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        storage ??= LocalShardStorage.Instance;
        var full = Path.GetFullPath(prefix);
        var dir = Path.GetDirectoryName(full)!;
        var name = Path.GetFileName(full);
        storage.Delete(BundleNaming.IndexFile(full));
        if (Directory.Exists(dir))
        {
            foreach (var data in Directory.EnumerateFiles(dir, name + ".data-*-of-*"))
            {
                // Exactly <name>.data-%05d-of-%05d (not a longer prefix that happens to match).
                var suffix = Path.GetFileName(data)[name.Length..];
                if (suffix.Length >= 15 && !suffix.Contains(".tempstate", StringComparison.Ordinal)) storage.Delete(data);
            }
        }
        storage.FlushDirectory(dir);
    }
}

namespace CheckpointGpu;

/// <summary>
/// Opt-in incremental saves for a <see cref="CheckpointManager"/> (<see cref="CheckpointManager.IncrementalSaves"/>):
/// data files whose tensors are all unchanged since the manager's previous checkpoint are hard-linked from that
/// checkpoint instead of being written, and their device→host copies are skipped.
/// </summary>
/// <remarks>
/// <para><b>Sharding by change history.</b> The manager's sharding policy is replaced by one that groups tensors by
/// their history: tensors that are unchanged since the previous checkpoint and already sit in a data file made only of
/// unchanged tensors keep that file (hard link); unchanged tensors from mixed files are rewritten together into a new
/// "stable" file (linkable at the next save); changed tensors, state that is not a <see cref="Variable"/>
/// (host values, dataset iterators, partitioned slices) and the object graph go to a "volatile" file written every time.
/// The <c>.index</c> is always written fresh. Every checkpoint is a plain, standalone TensorFlow checkpoint: a hard link
/// is the same file under a second name, so deleting (pruning) an older checkpoint never removes bytes a newer one
/// uses.</para>
/// <para><b>What counts as unchanged</b>: the same <see cref="Variable"/> object with the same
/// <see cref="Variable.ModificationVersion"/> as at the previous save, and — when hashing applies
/// (<see cref="Variable.ContentHashing"/> or <see cref="HashAllVariables"/>) — the same xxHash3 of its device bytes. See
/// <see cref="Variable"/>'s change-tracking remarks for what the caller must do after writing device memory directly.</para>
/// <para><b>Asynchronous saves</b> (<see cref="CheckpointManager.SaveAsync"/>): what is unchanged is decided at the call
/// (versions and hashes are read before it returns); the previous save may still be queued — its planned layout stands in
/// for its index, and the links are made after it has finished (saves commit in call order). A linked tensor's bytes are
/// never read from the device, so a write after the call cannot leak into the checkpoint; a write before it bumps the
/// version and the tensor is written. Changed tensors go through the IO pipeline into a temporary part
/// (<c>&lt;prefix&gt;_temp/part-00000-of-00001</c>, the handle's <see cref="Pipeline.SaveHandle.Prefix"/>), which is merged
/// with the links once it commits. If the previous save fails, the saves queued before that was known fail too (their
/// skipped bytes exist nowhere; nothing of theirs is published) and the next save writes everything.</para>
/// <para><b>Multi-worker saves</b> (<see cref="CheckpointOptions.MultiWorker"/>, synchronous or not): each worker applies the
/// same rules to the tensors it owns — its unchanged data files of the previous merged checkpoint are hard-linked into its
/// own part (merged with its fresh part under <c>&lt;part&gt;.incremental/</c> before it reports), so the chief's merge and
/// the merged checkpoint are those of an ordinary multi-worker save (a plain TF checkpoint, with more data files).</para>
/// <para><b>Limits.</b> The first save of a manager object is a full save (history lives in memory only). LZ4
/// (<see cref="CheckpointOptions.Compression"/>) with incremental saves is single-process only. Where hard links are
/// unsupported (another filesystem, Windows without permission) the file is copied and the log says so once.</para>
/// <para>Thread-safety: immutable (init-only); safe to share.</para>
/// </remarks>
public sealed class IncrementalSaveOptions
{
    /// <summary>
    /// Hash the device bytes of every variable at each incremental save (xxHash3), not only of those with
    /// <see cref="Variable.ContentHashing"/>: catches writes the caller did not report with
    /// <see cref="Variable.MarkModified"/>, at the price of one device→host read of every variable per save. Default false.
    /// </summary>
    public bool HashAllVariables { get; init; }

    /// <summary>Where the one-time notice about falling back from hard links to copies goes. Default standard error; <see langword="null"/> silences it.</summary>
    public TextWriter? Log { get; init; } = Console.Error;

    /// <summary>Test seam: never try hard links (exercise the copy fallback).</summary>
    internal bool DisableHardLinks { get; init; }
}

/// <summary>What one incremental save did (<see cref="CheckpointManager.LastIncrementalSave"/>).</summary>
/// <param name="Prefix">The checkpoint prefix written.</param>
/// <param name="PreviousPrefix">The checkpoint data files were linked from, or <see langword="null"/> (full save).</param>
/// <param name="ShardsWritten">Data files written from device memory in this save.</param>
/// <param name="ShardsLinked">Data files hard-linked from <paramref name="PreviousPrefix"/>.</param>
/// <param name="ShardsCopied">Data files copied from <paramref name="PreviousPrefix"/> because a hard link was not possible.</param>
/// <param name="BytesWritten">Bytes of data files written in this save (excluding the index), in bytes.</param>
/// <param name="BytesReused">Bytes of data files linked or copied from the previous checkpoint, in bytes.</param>
/// <param name="TensorsWritten">Tensors (and other saveable values) written, including the object graph.</param>
/// <param name="TensorsReused">Tensors whose bytes came from the previous checkpoint (no device→host copy).</param>
public sealed record IncrementalSaveReport(string Prefix, string? PreviousPrefix, int ShardsWritten, int ShardsLinked, int ShardsCopied,
    long BytesWritten, long BytesReused, int TensorsWritten, int TensorsReused);

using CheckpointGpu.Format;

namespace CheckpointGpu.Pipeline.Saving;

/// <summary>The commit of a save: Format's one protocol (<see cref="BundleCommit"/>) driven from the pipeline.</summary>
internal sealed partial class SaveOperation
{
    /// <summary>
    /// Steps 2–8 of the commit protocol: data files are truncated and flushed (one blocking fsync per shard, in parallel
    /// on the pipeline's IO threads) while the index, which needs only the plan and the checksums, is written and
    /// flushed; then <see cref="BundleCommit.Publish"/> renames (index last: the commit point) and flushes the directory.
    /// </summary>
    private async Task CommitAsync(BundleCommit commit, IShardFile?[] files, CancellationToken ct)
    {
        var flushes = new Task[files.Length];
        for (var s = 0; s < files.Length; s++)
        {
            var f = files[s]!;
            var size = Plan.ShardSizes[s];
            flushes[s] = CheckpointPipeline.IOThreads.Run(() => commit.FlushData(f, size), CancellationToken.None);
        }
        var entries = Plan.ToEntries(_options.ComputeChecksums ? _crc : new uint[_crc.Length]);
        try
        {
            await CheckpointPipeline.IOThreads.Run(() => commit.WriteIndex(Plan.Header, entries), ct).ConfigureAwait(false);
        }
        finally
        {
            try { await Task.WhenAll(flushes).ConfigureAwait(false); }
            catch (Exception ex) { AddFailure(ex); }
        }
        ThrowIfFailed();
        for (var s = 0; s < files.Length; s++)
        {
            files[s]!.Dispose();
            files[s] = null;
        }
        ct.ThrowIfCancellationRequested();
        await CheckpointPipeline.IOThreads.Run(commit.Publish, ct).ConfigureAwait(false);
        _committedEntries = entries;
    }
}

namespace CheckpointGpu.Format;

/// <summary>Settings of <see cref="TensorBundle.Merge(IReadOnlyList{string}, string, TensorBundleMergeOptions?)"/>.</summary>
/// <remarks>Init-only; may be shared between calls and threads.</remarks>
public sealed class TensorBundleMergeOptions
{
    /// <summary>The defaults.</summary>
    public static TensorBundleMergeOptions Default { get; } = new();

    /// <summary>
    /// Skip inputs whose <c>.index</c> is missing (newer TF's <c>allow_missing_files</c>); at least one input must
    /// exist. Default <see langword="false"/>: a missing input is an error.
    /// </summary>
    public bool AllowMissingFiles { get; init; }

    /// <summary>
    /// After a successful merge, delete each input's directory when it differs from the output's and is empty
    /// (what TF's <c>MergeV2Checkpoints</c> kernel does with <c>delete_old_dirs=True</c>; removes <c>P_temp/</c>).
    /// Default <see langword="true"/>.
    /// </summary>
    public bool DeleteOldDirectories { get; init; } = true;

    /// <summary>
    /// After a successful merge, delete each input's <c>.index</c> file (TF's <c>MergeBundles</c> does). Default
    /// <see langword="true"/>. <see langword="false"/> returns right after the merged bundle is durable, leaving the
    /// inputs' index files (and so their directories, whatever <see cref="DeleteOldDirectories"/> says) to the caller —
    /// for a caller that removes the inputs' directory itself later and has something more urgent to do first (a
    /// multi-worker chief telling the workers its verdict: the deletes are metadata writes that can take milliseconds).
    /// </summary>
    public bool DeleteInputIndexes { get; init; } = true;

    /// <summary>
    /// Flush the merged index and the output directory to stable storage before returning. Default
    /// <see langword="true"/>.
    /// </summary>
    public bool FlushToDisk { get; init; } = true;

    /// <summary>The storage seam every file operation goes through (<see cref="BundleCommit"/>). Default <see langword="null"/>: <see cref="LocalShardStorage.Instance"/>.</summary>
    public IShardStorage? Storage { get; init; }

    /// <summary>Limits applied when reading the input indexes. Default <see cref="TensorBundleReaderOptions.Default"/>.</summary>
    public TensorBundleReaderOptions ReaderOptions { get; init; } = TensorBundleReaderOptions.Default;
}

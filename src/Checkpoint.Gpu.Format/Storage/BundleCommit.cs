namespace CheckpointGpu.Format;

/// <summary>
/// The one commit protocol of a checkpoint: every writer — the IO pipeline's saves (synchronous and asynchronous),
/// <see cref="TensorBundleWriter"/> (<c>ckpt convert</c>), <see cref="TensorBundle.Merge(IReadOnlyList{string}, string, TensorBundleMergeOptions?)"/>
/// (multi-worker merges) — publishes its files through an instance of this class, and every state-file update and
/// deletion goes through its static members. All file-system effects go through an <see cref="IShardStorage"/>, so a
/// fault injected at any step is seen by every path.
/// </summary>
/// <remarks>
/// <para><b>The order</b> (a crash or failure at any instant leaves the previous checkpoint and the state file valid):</para>
/// <list type="number">
/// <item><b>data</b>: each shard is written under <c>&lt;prefix&gt;.data-i-of-N.tempstate&lt;random&gt;</c>
/// (<see cref="CreateDataFile"/>; <see cref="TemporaryFileNames"/>) or, for a merge, is an existing durable file
/// (<see cref="AdoptDataFile"/>);</item>
/// <item><b>fsync</b> of each data file (<see cref="FlushData"/>, which also truncates an <c>O_DIRECT</c> tail);</item>
/// <item><b>index</b> under <c>&lt;prefix&gt;.index.tempstate&lt;random&gt;</c>, then its <b>fsync</b> (<see cref="WriteIndex(BundleHeader, IEnumerable{BundleEntry})"/>);</item>
/// <item><see cref="Publish"/>: <b>remove a stale index</b> (an older bundle at the same prefix), <b>rename the data
/// files</b>, <b>rename the index — the commit point</b>, <b>fsync the directory</b>. (The stale index goes before the
/// data renames, not after: renaming new data under an old index would let a crash between the two pair them.)</item>
/// <item><b>state file</b> (<see cref="PublishState"/>): temporary <c>checkpoint.tmp&lt;hex&gt;</c>, fsync, rename, fsync
/// of the directory — only after the commit point, so it never names an incomplete checkpoint;</item>
/// <item><b>prune</b> (<see cref="DeleteCheckpoint"/>) only after the state file no longer names what is deleted:
/// index first, then data files, then a directory fsync.</item>
/// </list>
/// <para>Before the commit point, <see cref="Dispose"/> (or a failure inside <see cref="Publish"/>) deletes every
/// temporary file and data file already renamed, and moves adopted files back; existing files of other checkpoints are
/// never touched. TensorFlow's <c>BundleWriter::Finish</c> (<c>tensorflow/core/util/tensor_bundle/tensor_bundle.cc</c>)
/// also writes under <c>.tempstate</c> names and renames the index last; it neither fsyncs the directory nor removes a
/// stale index.</para>
/// <para>Not thread-safe: one writer drives one commit (data files may be written concurrently through their
/// <see cref="IShardFile"/>s).</para>
/// </remarks>
public sealed class BundleCommit : IDisposable
{
    private readonly string?[] _temp;
    private readonly string?[] _adopted;
    private readonly List<(string From, string To, bool Adopted)> _renamed = [];
    private readonly bool _flushToDisk;
    private string? _indexTemp;
    private bool _disposed;

    /// <summary>Starts a commit of a bundle of <paramref name="shardCount"/> data files at <paramref name="prefix"/>; creates its directory if missing.</summary>
    /// <param name="prefix">Checkpoint prefix, e.g. <c>/train/ckpt-3</c>.</param>
    /// <param name="shardCount">Number of data files (<c>num_shards</c>), ≥ 1.</param>
    /// <param name="storage">The storage seam; <see cref="LocalShardStorage.Instance"/> when null.</param>
    /// <param name="flushToDisk">False skips every fsync (benchmarks of the page cache only; never for real checkpoints).</param>
    /// <exception cref="ArgumentException"><paramref name="prefix"/> is empty.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="shardCount"/> is less than 1.</exception>
    /// <exception cref="IOException">The directory cannot be created.</exception>
    public BundleCommit(string prefix, int shardCount, IShardStorage? storage = null, bool flushToDisk = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        ArgumentOutOfRangeException.ThrowIfLessThan(shardCount, 1);
        Prefix = prefix;
        FullPrefix = Path.GetFullPath(prefix);
        Directory = Path.GetDirectoryName(FullPrefix)!;
        IndexPath = BundleNaming.IndexFile(prefix);
        ShardCount = shardCount;
        Storage = storage ?? LocalShardStorage.Instance;
        _flushToDisk = flushToDisk;
        _temp = new string?[shardCount];
        _adopted = new string?[shardCount];
        System.IO.Directory.CreateDirectory(Directory);
    }

    /// <summary>The prefix as given.</summary>
    public string Prefix { get; }

    /// <summary>The absolute prefix.</summary>
    public string FullPrefix { get; }

    /// <summary>The directory the bundle lives in (absolute).</summary>
    public string Directory { get; }

    /// <summary>The final <c>.index</c> path.</summary>
    public string IndexPath { get; }

    /// <summary>Number of data files.</summary>
    public int ShardCount { get; }

    /// <summary>The storage seam every step goes through.</summary>
    public IShardStorage Storage { get; }

    /// <summary>True once the index rename (the commit point) succeeded.</summary>
    public bool IsCommitted { get; private set; }

    /// <summary>The final path of data file <paramref name="shard"/>: <c>&lt;prefix&gt;.data-%05d-of-%05d</c>.</summary>
    /// <param name="shard">Shard id in [0, <see cref="ShardCount"/>).</param>
    /// <returns>The path.</returns>
    public string DataPath(int shard) => BundleNaming.DataFile(Prefix, shard, ShardCount);

    /// <summary>Step 1: creates data file <paramref name="shard"/> under a fresh temporary name, renamed by <see cref="Publish"/>.</summary>
    /// <param name="shard">Shard id in [0, <see cref="ShardCount"/>).</param>
    /// <param name="preferDirectIO">Open with <c>O_DIRECT</c> when the file system allows it.</param>
    /// <returns>The open file; the caller writes, flushes (<see cref="FlushData"/>) and disposes it.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="shard"/> is out of range.</exception>
    /// <exception cref="InvalidOperationException">The shard already has a file, or the commit is finished.</exception>
    /// <exception cref="IOException">The file cannot be created.</exception>
    public IShardFile CreateDataFile(int shard, bool preferDirectIO)
    {
        CheckShard(shard);
        var temp = TemporaryFileNames.ForBundleFile(DataPath(shard));
        _temp[shard] = temp;   // recorded first: a create that fails half-way is cleaned up too
        return Storage.CreateForWrite(temp, preferDirectIO);
    }

    /// <summary>Step 1 for a merge: data file <paramref name="shard"/> is the existing, already durable file <paramref name="existingPath"/>;
    /// <see cref="Publish"/> renames it, and a commit that does not reach its commit point moves it back.</summary>
    /// <param name="shard">Shard id in [0, <see cref="ShardCount"/>).</param>
    /// <param name="existingPath">The file to adopt.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="shard"/> is out of range.</exception>
    /// <exception cref="InvalidOperationException">The shard already has a file, or the commit is finished.</exception>
    /// <exception cref="FileNotFoundException"><paramref name="existingPath"/> does not exist.</exception>
    public void AdoptDataFile(int shard, string existingPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(existingPath);
        CheckShard(shard);
        if (!Storage.Exists(existingPath))
            throw new FileNotFoundException($"{Path.GetFileName(existingPath)}: data file to merge not found [{existingPath}].", existingPath);
        _adopted[shard] = existingPath;
    }

    /// <summary>Step 2: truncates <paramref name="file"/> to <paramref name="lengthInBytes"/> when an <c>O_DIRECT</c> tail was padded, then flushes it to disk.</summary>
    /// <param name="file">A data file of this commit.</param>
    /// <param name="lengthInBytes">Its exact length.</param>
    /// <exception cref="IOException">The truncate or the flush failed.</exception>
    public void FlushData(IShardFile file, long lengthInBytes)
    {
        ArgumentNullException.ThrowIfNull(file);
        if (file.IsDirect && lengthInBytes % IShardFile.DirectIOAlignmentInBytes != 0) file.SetLength(lengthInBytes);
        if (_flushToDisk) file.FlushToDisk();
    }

    /// <summary>Steps 3–4: serializes the index (entries sorted by key bytes), writes it under a temporary name and flushes it.</summary>
    /// <param name="header">The header; its shard count must equal <see cref="ShardCount"/>.</param>
    /// <param name="entries">The entries, in any order.</param>
    /// <exception cref="ArgumentException">The header's shard count differs, or keys are empty, repeated or name missing shards.</exception>
    /// <exception cref="IOException">Writing or flushing failed.</exception>
    public void WriteIndex(BundleHeader header, IEnumerable<BundleEntry> entries)
    {
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(entries);
        if (header.ShardCount != ShardCount)
            throw new ArgumentException($"The header names {header.ShardCount} shards; this commit has {ShardCount}.", nameof(header));
        using var ms = new MemoryStream();
        TensorBundleIndex.Serialize(ms, header, entries);
        WriteIndex(ms.GetBuffer().AsSpan(0, (int)ms.Length));
    }

    /// <summary>Steps 3–4 with a serialized index table.</summary>
    /// <param name="indexBytes">The complete <c>.index</c> file.</param>
    /// <exception cref="InvalidOperationException">An index was written already, or the commit is finished.</exception>
    /// <exception cref="IOException">Writing or flushing failed.</exception>
    public void WriteIndex(ReadOnlySpan<byte> indexBytes)
    {
        ThrowIfFinished();
        if (_indexTemp is not null) throw new InvalidOperationException($"{IndexPath}: the index was written already.");
        _indexTemp = TemporaryFileNames.ForBundleFile(IndexPath);
        using var file = Storage.CreateForWrite(_indexTemp, preferDirectIO: false);
        file.Write(indexBytes, 0);
        if (_flushToDisk) file.FlushToDisk();
    }

    /// <summary>
    /// Steps 5–8: removes a stale <c>.index</c> at the prefix, renames every data file, renames the index (the commit
    /// point), flushes the directory. Data files must be closed (or at least flushed) by now.
    /// </summary>
    /// <exception cref="InvalidOperationException">A data file or the index is missing from this commit, or it is finished.</exception>
    /// <exception cref="IOException">A delete, rename or flush failed. Before the commit point everything is rolled back;
    /// a failure of the directory flush (after it) leaves the committed files in place but not known to be durable.</exception>
    public void Publish()
    {
        ThrowIfFinished();
        if (_indexTemp is null) throw new InvalidOperationException($"{IndexPath}: WriteIndex must run before Publish.");
        for (var s = 0; s < ShardCount; s++)
            if (_temp[s] is null && _adopted[s] is null) throw new InvalidOperationException($"{DataPath(s)}: no data file was created or adopted.");
        try
        {
            // An older bundle under the same prefix must not pair its index with our data files mid-way.
            if (Storage.Exists(IndexPath)) Storage.Delete(IndexPath);
            for (var s = 0; s < ShardCount; s++)
            {
                var from = _temp[s] ?? _adopted[s]!;
                var to = DataPath(s);
                Storage.Move(from, to);
                _renamed.Add((from, to, _adopted[s] is not null));
            }
            Storage.Move(_indexTemp, IndexPath);   // the commit point
            IsCommitted = true;
            _indexTemp = null;
        }
        catch
        {
            Rollback();
            throw;
        }
        if (_flushToDisk) Storage.FlushDirectory(Directory);
    }

    /// <summary>Before the commit point: deletes the temporaries and the data files already renamed, moves adopted files back. Never throws.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (!IsCommitted) Rollback();
    }

    private void Rollback()
    {
        // In reverse, so adopted inputs stay a consistent, retryable set.
        for (var i = _renamed.Count - 1; i >= 0; i--)
        {
            var (from, to, adopted) = _renamed[i];
            if (adopted) TryQuietly(() => Storage.Move(to, from));
            else TryQuietly(() => Storage.Delete(to));
        }
        _renamed.Clear();
        foreach (var t in _temp)
            if (t is not null) TryQuietly(() => Storage.Delete(t));
        Array.Clear(_temp);
        if (_indexTemp is not null) TryQuietly(() => Storage.Delete(_indexTemp));
        _indexTemp = null;
    }

    private void CheckShard(int shard)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(shard);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(shard, ShardCount);
        ThrowIfFinished();
        if (_temp[shard] is not null || _adopted[shard] is not null)
            throw new InvalidOperationException($"{DataPath(shard)}: this shard already has a data file.");
    }

    private void ThrowIfFinished()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (IsCommitted) throw new InvalidOperationException($"{IndexPath}: the bundle is committed already.");
    }

    private static void TryQuietly(Action action)
    {
        try { action(); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    // ------------------------------------------------------------------ after the commit point

    /// <summary>
    /// Step 9: replaces <c>&lt;directory&gt;/checkpoint</c> atomically and durably (temporary file, fsync, rename, fsync of
    /// the directory; <see cref="CheckpointStateFile.Write(string, CheckpointState, IShardStorage?)"/>). Call only after
    /// <see cref="Publish"/> of every checkpoint the state names.
    /// </summary>
    /// <param name="directory">Directory of the checkpoints.</param>
    /// <param name="state">The new state.</param>
    /// <param name="storage">The storage seam; local when null.</param>
    /// <exception cref="ArgumentException">The state is invalid (empty model path).</exception>
    /// <exception cref="IOException">Writing, renaming or flushing failed; the previous state file is intact and no temporary is left.</exception>
    public static void PublishState(string directory, CheckpointState state, IShardStorage? storage = null) =>
        CheckpointStateFile.Write(directory, state, storage);

    /// <summary>TF's <c>Checkpoint.save</c> state update: a state file naming only <paramref name="prefix"/> (relative to its directory), published with <see cref="PublishState"/>.</summary>
    /// <param name="prefix">A committed checkpoint prefix.</param>
    /// <param name="storage">The storage seam; local when null.</param>
    /// <exception cref="IOException">Publishing failed; the previous state file is intact.</exception>
    public static void PublishLatest(string prefix, IShardStorage? storage = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        var full = Path.GetFullPath(prefix);
        var dir = Path.GetDirectoryName(full)!;
        PublishState(dir, new CheckpointState(Path.GetRelativePath(dir, full)), storage);
    }

    /// <summary>
    /// Step 10 (prune): deletes a checkpoint — the <c>.index</c> first (a crash mid-way never leaves an index without its
    /// data), then its data files <c>&lt;prefix&gt;.data-?????-of-?????</c> (exact names, not longer prefixes, never
    /// temporaries), then flushes the directory. Call only after the state file no longer names it.
    /// </summary>
    /// <param name="prefix">The checkpoint prefix.</param>
    /// <param name="storage">The storage seam; local when null.</param>
    /// <exception cref="IOException">A delete or the flush failed.</exception>
    public static void DeleteCheckpoint(string prefix, IShardStorage? storage = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        storage ??= LocalShardStorage.Instance;
        var full = Path.GetFullPath(prefix);
        var dir = Path.GetDirectoryName(full)!;
        var name = Path.GetFileName(full);
        storage.Delete(BundleNaming.IndexFile(full));
        if (!System.IO.Directory.Exists(dir)) return;
        foreach (var data in System.IO.Directory.EnumerateFiles(dir, name + ".data-*-of-*"))
        {
            var fileName = Path.GetFileName(data);
            if (BundleNaming.IsDataFileOf(name, fileName)) storage.Delete(data);
        }
        storage.FlushDirectory(dir);
    }
}

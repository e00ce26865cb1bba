using System.Globalization;
using CheckpointGpu.Format;
using CheckpointGpu.Format.Protos;
using CheckpointGpu.IO;
using Google.Protobuf;

namespace CheckpointGpu;

/// <summary>
/// Saves and restores the object graph below any root <see cref="Trackable"/> (TF's <c>TrackableSaver</c>, TF1's
/// <c>CheckpointableSaver</c>; <c>tensorflow/python/checkpoint/checkpoint.py</c>). <see cref="Checkpoint"/> wraps one
/// rooted at itself; Keras-2 <c>save_weights</c> uses one rooted at the model (<see cref="SaveWeights"/>).
/// </summary>
/// <remarks>
/// <para><b>What a save writes</b> (spec §6.5, §4.1): every tensor of every reachable object under
/// <c>&lt;path&gt;/.ATTRIBUTES/&lt;name&gt;</c> in node-id order, then the serialized object graph under
/// <c>_CHECKPOINTABLE_OBJECT_GRAPH</c>, last. Every save — synchronous or not — is the IO pipeline's save (the synchronous
/// forms wait for it), committed through Format's <see cref="BundleCommit"/> (temporary names, fsyncs, renames, the index
/// rename is the commit point, directory fsync). The saver never touches the <c>checkpoint</c> state file.</para>
/// <para><b>Root difference.</b> Node 0 is the root given here. <c>new Checkpoint(("model", m))</c> makes keys
/// <c>model/dense/kernel/...</c>; <c>SaveWeights(m, path)</c> makes <c>dense/kernel/...</c>. The two layouts restore
/// only into a tree with the same root.</para>
/// <para>Thread-safety: not thread-safe.</para>
/// </remarks>
public sealed partial class TrackableSaver
{
    private readonly List<LoadStatus> _statuses = [];

    /// <summary>Creates a saver rooted at <paramref name="root"/> (node 0).</summary>
    /// <param name="root">The root object; referenced, not owned.</param>
    public TrackableSaver(Trackable root)
    {
        ArgumentNullException.ThrowIfNull(root);
        Root = root;
        View = new ObjectGraphView(root);
    }

    /// <summary>Node 0 of saved graphs.</summary>
    public Trackable Root { get; }

    /// <summary>The object-graph view over <see cref="Root"/>.</summary>
    public ObjectGraphView View { get; }

    /// <summary>Where warnings go (unmatched values when a status is disposed, inconsistent references). Default: standard error; <see langword="null"/> silences them.</summary>
    public TextWriter? Log { get; set; } = Console.Error;

    /// <summary>
    /// Writes a checkpoint (TF's <c>TrackableSaver.save</c>): the prefix is <paramref name="filePrefix"/>, with
    /// <c>-N</c> appended only when <paramref name="checkpointNumber"/> is non-zero.
    /// </summary>
    /// <param name="filePrefix">Prefix path (directory created if missing).</param>
    /// <param name="checkpointNumber">Suffix number; 0 adds none.</param>
    /// <param name="options">Options; frozen by this call. Default <see cref="CheckpointOptions.Default"/>.</param>
    /// <returns>The prefix written.</returns>
    /// <exception cref="ArgumentException"><paramref name="filePrefix"/> is empty.</exception>
    /// <exception cref="IOException">Writing failed; no partial checkpoint is left under the final names.</exception>
    /// <exception cref="InvalidOperationException">The object graph is invalid (duplicate names, slot reused as dependency).</exception>
    public string Save(string filePrefix, long checkpointNumber = 0, CheckpointOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(filePrefix);
        var path = NumberedPrefix(filePrefix, checkpointNumber);
        WriteCore(path, options ?? CheckpointOptions.Default);
        return path;
    }

    /// <summary>Writes a checkpoint at exactly <paramref name="filePrefix"/> (same as <see cref="Save"/> with no number).</summary>
    /// <param name="filePrefix">Prefix path.</param>
    /// <param name="options">Options; frozen by this call.</param>
    /// <returns>The prefix written.</returns>
    /// <exception cref="IOException">Writing failed.</exception>
    public string Write(string filePrefix, CheckpointOptions? options = null) => Save(filePrefix, 0, options);

    /// <summary>
    /// Keras-2 <c>model.save_weights(path)</c> in TF format: writes a checkpoint rooted at <paramref name="root"/>
    /// (keys without a <c>model/</c> prefix) at exactly <paramref name="filePath"/>, then points the
    /// <c>checkpoint</c> state file in its directory at it.
    /// </summary>
    /// <param name="root">The model (node 0).</param>
    /// <param name="filePath">Prefix path.</param>
    /// <param name="options">Options; frozen by this call.</param>
    /// <returns>The prefix written.</returns>
    /// <exception cref="IOException">Writing failed.</exception>
    public static string SaveWeights(Trackable root, string filePath, CheckpointOptions? options = null)
    {
        var saver = new TrackableSaver(root);
        try
        {
            var path = saver.Save(filePath, 0, options);
            UpdateStateFile(path, (options ?? CheckpointOptions.Default).Storage);
            return path;
        }
        finally
        {
            saver.DisposePipelinesAndWait();
        }
    }

    /// <summary>
    /// Keras-2 <c>model.load_weights(path)</c> for TF-format weights: restores into <paramref name="root"/> (existing
    /// and future variables) and asserts a non-trivial match.
    /// </summary>
    /// <param name="root">The model (node 0).</param>
    /// <param name="filePath">Prefix path.</param>
    /// <param name="options">Options; frozen by this call.</param>
    /// <returns>The status.</returns>
    /// <exception cref="CheckpointMismatchException">Nothing besides the root matched.</exception>
    public static LoadStatus LoadWeights(Trackable root, string filePath, CheckpointOptions? options = null) =>
        new TrackableSaver(root).Restore(filePath, options).AssertNontrivialMatch();

    /// <summary>TF's <c>Checkpoint.save</c> state update: only fields 1–2, one relative path.</summary>
    internal static void UpdateStateFile(string prefix, IShardStorage storage)
    {
        var full = Path.GetFullPath(prefix);
        var dir = Path.GetDirectoryName(full)!;
        var relative = Path.GetRelativePath(dir, full);
        BundleCommit.PublishState(dir, new Format.CheckpointState(relative), storage);
    }

    /// <summary>One piece of a save: a tensor (or one slice of a partitioned tensor) and how to write it.</summary>
    /// <param name="Key">Checkpoint key offered to the sharding policy.</param>
    /// <param name="EstimatedSizeInBytes">Payload size estimate in bytes.</param>
    /// <param name="Write">Writes the piece to the given data file.</param>
    internal sealed record SaveUnit(string Key, long EstimatedSizeInBytes, Action<ITensorWriter, int> Write);

    /// <summary>One save unit per snapshot tensor, in data order.</summary>
    internal static List<SaveUnit> BuildUnits(ObjectGraphSnapshot snapshot)
    {
        var units = new List<SaveUnit>(snapshot.Tensors.Count);
        foreach (var t in snapshot.Tensors)
        {
            var tensor = t;
            units.Add(new SaveUnit(tensor.Key, tensor.Attribute.EstimatedSizeInBytes, (writer, shardId) => tensor.Attribute.Save(writer, tensor.Key, shardId)));
        }
        return units;
    }

    /// <summary>Asks the sharding policy for every unit's shard (the object graph, when present, is the last tensor).</summary>
    internal static ShardAssignment AssignShards(IReadOnlyList<SaveUnit> units, byte[]? graphBytes, IShardingPolicy policy)
    {
        var offered = new List<ShardableTensor>(units.Count + 1);
        foreach (var u in units)
            offered.Add(new ShardableTensor(u.Key, DType.Invalid, TensorShape.Scalar, u.EstimatedSizeInBytes));
        if (graphBytes is not null)
            offered.Add(new ShardableTensor(CheckpointKeys.ObjectGraph, DType.String, TensorShape.Scalar, graphBytes.Length));
        var assignment = policy.AssignShards(offered);
        ValidateAssignment(assignment, offered.Count);
        return assignment;
    }

    /// <summary>
    /// The write seam shared by single-process and multi-worker saves: writes <paramref name="units"/> (in order) and,
    /// when <paramref name="graphBytes"/> is given, the object graph last, as one bundle at <paramref name="prefix"/>
    /// with data files chosen by <paramref name="policy"/>, through the bundle-writer stage (<see cref="TensorBundleWriter"/>,
    /// published by <see cref="BundleCommit"/>). Used only where the ring pipeline cannot go yet: LZ4-compressed saves
    /// (compressed sizes decide file offsets, which the pipeline plans up front) and the fresh part of incremental saves.
    /// </summary>
    internal static void WriteUnits(string prefix, IReadOnlyList<SaveUnit> units, byte[]? graphBytes, IShardingPolicy policy,
        BundleCompressionOptions? compression = null, bool flushToDisk = true)
    {
        var assignment = AssignShards(units, graphBytes, policy);

        // Issue 14 hook: LZ4 compression of whole tensors in the bundle writer (CheckpointOptions.Compression); incremental
        // saves flush the temporary part's data files themselves (its index is discarded by the merge).
        using var bundle = new TensorBundleWriter(prefix, new TensorBundleWriterOptions
            { ShardCount = assignment.ShardCount, Compression = compression, FlushToDisk = flushToDisk });
        var writer = new BundleTensorWriter(bundle);
        for (var i = 0; i < units.Count; i++) units[i].Write(writer, assignment.ShardIds[i]);
        // The object graph goes last (TF's data-file order, spec §4.1).
        if (graphBytes is not null) bundle.AddStrings(CheckpointKeys.ObjectGraph, TensorShape.Scalar, [graphBytes], assignment.ShardIds[^1]);
        bundle.Finish();
    }

    private static void ValidateAssignment(ShardAssignment assignment, int count)
    {
        if (assignment is null || assignment.ShardCount < 1 || assignment.ShardIds.Count != count)
            throw new InvalidOperationException("The sharding policy returned an invalid assignment (wrong count or no shards).");
        var used = new bool[assignment.ShardCount];
        foreach (var id in assignment.ShardIds)
        {
            if (id < 0 || id >= assignment.ShardCount) throw new InvalidOperationException($"The sharding policy assigned shard {id} of {assignment.ShardCount}.");
            used[id] = true;
        }
        // An empty shard would leave num_shards inconsistent with the files TF expects (spec §1.3).
        if (used.Any(u => !u)) throw new InvalidOperationException("The sharding policy left a data file empty.");
    }

    /// <summary>Writes pending unmatched-value warnings of every status issued so far and releases their files.</summary>
    internal void ReleaseStatuses()
    {
        foreach (var status in _statuses) status.Dispose();
        _statuses.Clear();
    }
}

using System.Text;
using CheckpointGpu.Format.Protos;
using CheckpointGpu.Format.Table;
using Google.Protobuf;
using Microsoft.Win32.SafeHandles;

namespace CheckpointGpu.Format;

/// <summary>
/// Reads a TensorFlow V2 checkpoint ("tensor bundle"): <c>&lt;prefix&gt;.index</c> plus
/// <c>&lt;prefix&gt;.data-NNNNN-of-MMMMM</c> shards (<c>tensor_bundle.cc</c> <c>BundleReader</c>; spec sections 1–4, 10).
/// </summary>
/// <remarks>
/// <para><see cref="Open"/> reads and validates the whole index (every block CRC, the header, every entry's
/// dtype, shape, shard id and size rule). Data files are opened lazily on first read, by names derived from
/// the header's shard count (never by listing the directory), and every read checks the entry against the
/// data file's length and verifies TensorFlow's masked CRC32C.</para>
/// <para>Thread-safety: after <see cref="Open"/> returns, all members may be called concurrently (reads are
/// positional, <see cref="RandomAccess"/>); <see cref="Dispose"/> must not race with reads.</para>
/// </remarks>
public sealed partial class TensorBundleReader : IDisposable
{
    private readonly Dictionary<string, BundleEntry> _byKey;
    private readonly Dictionary<int, (SafeFileHandle Handle, long Length)> _shards = new();
    private readonly Lock _shardLock = new();
    private readonly TensorBundleReaderOptions _options;
    private bool _disposed;

    private TensorBundleReader(string prefix, BundleHeader header, BundleEntry[] entries, TensorBundleReaderOptions options)
    {
        Prefix = prefix;
        IndexPath = BundleNaming.IndexFile(prefix);
        Header = header;
        Entries = entries;
        _options = options;
        _byKey = new Dictionary<string, BundleEntry>(entries.Length, StringComparer.Ordinal);
        foreach (var e in entries) _byKey.TryAdd(e.Key, e);
    }

    /// <summary>The checkpoint prefix as given to <see cref="Open"/>.</summary>
    public string Prefix { get; }

    /// <summary>Path of the <c>.index</c> file.</summary>
    public string IndexPath { get; }

    /// <summary>The parsed header (value of the empty key).</summary>
    public BundleHeader Header { get; }

    private BundleEntry[]? _entriesInDataOrder;

    /// <summary>Every entry except the header, in table (unsigned key byte) order; slice entries and partitioned full entries included.</summary>
    public IReadOnlyList<BundleEntry> Entries { get; }

    /// <summary>
    /// Entries that have a payload (partitioned full-tensor entries excluded), in the order their bytes sit in the
    /// data files: by shard, then offset; among entries at the same offset the zero-size ones first (an empty tensor
    /// written just before a non-empty one shares its offset). Adding them to a <see cref="TensorBundleWriter"/> in
    /// this order reproduces TensorFlow's data files byte for byte; reading in this order is sequential IO.
    /// </summary>
    public IReadOnlyList<BundleEntry> EntriesInDataOrder =>
        _entriesInDataOrder ??= Entries.Where(e => !e.IsPartitioned).OrderBy(e => e.ShardId).ThenBy(e => e.Offset).ThenBy(e => e.Size).ToArray();

    /// <summary>The options in effect.</summary>
    public TensorBundleReaderOptions Options => _options;

    /// <summary>True when the bundle has a <c>_CHECKPOINTABLE_OBJECT_GRAPH</c> entry (object-based checkpoint).</summary>
    public bool IsObjectBased => _byKey.ContainsKey(CheckpointKeys.ObjectGraph);

    /// <summary>
    /// Opens the bundle at <paramref name="prefix"/> and validates its index.
    /// </summary>
    /// <param name="prefix">Checkpoint prefix, e.g. <c>/train/ckpt-3</c> (not a file name).</param>
    /// <param name="options">Limits; <see cref="TensorBundleReaderOptions.Default"/> when null.</param>
    /// <returns>An open reader; dispose it to close data files.</returns>
    /// <exception cref="ArgumentException"><paramref name="prefix"/> is empty.</exception>
    /// <exception cref="FileNotFoundException"><c>&lt;prefix&gt;.index</c> does not exist (and no V1 checkpoint is there); <see cref="FileNotFoundException.FileName"/> is the index path.</exception>
    /// <exception cref="CheckpointFormatException">The index is corrupt, exceeds a limit, or is a legacy V1 checkpoint (<see cref="CheckpointFormatError.LegacyV1Checkpoint"/>).</exception>
    /// <exception cref="IOException">The index cannot be read.</exception>
    public static TensorBundleReader Open(string prefix, TensorBundleReaderOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        options ??= TensorBundleReaderOptions.Default;
        var (header, entries) = TensorBundleIndex.ReadCore(prefix, BundleNaming.IndexFile(prefix), options);
        return new TensorBundleReader(prefix, header, entries, options);
    }

    /// <summary>Looks up an entry by key.</summary>
    /// <param name="key">The key, e.g. <c>model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE</c>.</param>
    /// <param name="entry">The entry, when found.</param>
    /// <returns>False when the key is absent (absence is not an error).</returns>
    public bool TryGetEntry(string key, [System.Diagnostics.CodeAnalysis.MaybeNullWhen(false)] out BundleEntry entry)
    {
        ArgumentNullException.ThrowIfNull(key);
        return _byKey.TryGetValue(key, out entry);
    }

    /// <summary>Returns the entry for <paramref name="key"/>.</summary>
    /// <param name="key">The key.</param>
    /// <exception cref="KeyNotFoundException">The key is not in the bundle; the message names the key and the index file.</exception>
    public BundleEntry GetEntry(string key)
    {
        if (TryGetEntry(key, out var entry)) return entry;
        throw new KeyNotFoundException($"{Path.GetFileName(IndexPath)}: key '{key}' not found in checkpoint [{IndexPath}].");
    }

    /// <summary>Path of data shard <paramref name="shardId"/> (<c>&lt;prefix&gt;.data-%05d-of-%05d</c>).</summary>
    /// <param name="shardId">0 ≤ id &lt; <see cref="BundleHeader.ShardCount"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="shardId"/> is out of range.</exception>
    public string GetDataFilePath(int shardId) => BundleNaming.DataFile(Prefix, shardId, Header.ShardCount);

    /// <summary>
    /// Reads and parses the object graph (<c>_CHECKPOINTABLE_OBJECT_GRAPH</c>), or returns null for a
    /// name-based checkpoint.
    /// </summary>
    /// <exception cref="CheckpointFormatException">The entry is not a DT_STRING scalar, exceeds <see cref="TensorBundleReaderOptions.MaxObjectGraphBytes"/>, fails its checksum, is not a valid proto, has no nodes, or references a node id outside the graph.</exception>
    /// <exception cref="FileNotFoundException">Its data file is missing.</exception>
    public TrackableObjectGraph? ReadObjectGraph()
    {
        if (!TryGetEntry(CheckpointKeys.ObjectGraph, out var entry)) return null;
        if (entry.DType != DType.String || entry.Shape.Rank != 0 || entry.IsPartitioned)
            ThrowHelper.Format(CheckpointFormatError.MalformedProto, IndexPath, "the object graph entry is not a DT_STRING scalar", entry.Key,
                comparison: $"found {DTypes.GetName(entry.DType)} {entry.Shape}");
        if (entry.Size > (long)_options.MaxObjectGraphBytes + 14)
            ThrowHelper.Format(CheckpointFormatError.LimitExceeded, IndexPath, "the object graph is larger than MaxObjectGraphBytes", entry.Key, entry.ShardId,
                entry.Offset, entry.Size, $"limit {_options.MaxObjectGraphBytes} bytes");
        var bytes = ReadStrings(entry)[0];
        TrackableObjectGraph graph;
        try
        {
            graph = TrackableObjectGraph.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException ex)
        {
            return ThrowHelper.Format<TrackableObjectGraph>(CheckpointFormatError.MalformedProto, GetDataFilePath(entry.ShardId),
                "the object graph cannot be parsed as a TrackableObjectGraph", entry.Key, entry.ShardId, entry.Offset, entry.Size, inner: ex);
        }
        ValidateNodeIds(graph, GetDataFilePath(entry.ShardId), entry);
        return graph;
    }

    /// <summary>
    /// Node 0 (the root) must exist and every child and slot-variable reference must name a node of the graph; edges to
    /// nodes already reached (back-edges, self-edges, shared children) are legal, as in TensorFlow.
    /// </summary>
    private static void ValidateNodeIds(TrackableObjectGraph graph, string path, BundleEntry entry)
    {
        var n = graph.Nodes.Count;
        if (n == 0)
            ThrowHelper.Format(CheckpointFormatError.MalformedProto, path, "the object graph has no nodes (node 0 must be the root)", entry.Key, entry.ShardId, entry.Offset, entry.Size);
        for (var id = 0; id < n; id++)
        {
            var node = graph.Nodes[id];
            foreach (var child in node.Children)
                if ((uint)child.NodeId >= (uint)n)
                    ThrowHelper.Format(CheckpointFormatError.MalformedProto, path,
                        $"object graph node {id} has an edge '{child.LocalName}' to node {child.NodeId}, beyond its {n} nodes", entry.Key, entry.ShardId, entry.Offset, entry.Size);
            foreach (var slot in node.SlotVariables)
                if ((uint)slot.OriginalVariableNodeId >= (uint)n || (uint)slot.SlotVariableNodeId >= (uint)n)
                    ThrowHelper.Format(CheckpointFormatError.MalformedProto, path,
                        $"object graph node {id} has a slot variable reference ('{slot.SlotName}': variable {slot.OriginalVariableNodeId}, slot {slot.SlotVariableNodeId}) beyond its {n} nodes",
                        entry.Key, entry.ShardId, entry.Offset, entry.Size);
        }
    }

    /// <summary>Closes the data files.</summary>
    public void Dispose()
    {
        lock (_shardLock)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var (handle, _) in _shards.Values) handle.Dispose();
            _shards.Clear();
        }
    }

    /// <summary>Opens (once) and returns the data file of <paramref name="shardId"/> with its length.</summary>
    private (SafeFileHandle Handle, long Length) GetShard(int shardId, string key)
    {
        if (shardId < 0 || shardId >= Header.ShardCount)
            ThrowHelper.Format(CheckpointFormatError.InvalidShardId, IndexPath, "entry names a data shard that does not exist", key, shardId,
                comparison: $"expected 0 <= shard_id < {Header.ShardCount}, found {shardId}");
        lock (_shardLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_shards.TryGetValue(shardId, out var shard)) return shard;
            var path = GetDataFilePath(shardId);
            SafeFileHandle handle;
            try
            {
                handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
            }
            catch (FileNotFoundException)
            {
                ThrowHelper.FileNotFound(path, "data file");
                throw;
            }
            catch (DirectoryNotFoundException)
            {
                ThrowHelper.FileNotFound(path, "data file");
                throw;
            }
            shard = (handle, RandomAccess.GetLength(handle));
            _shards[shardId] = shard;
            return shard;
        }
    }

    internal static string DescribeKey(byte[] key) => CheckpointKeys.ToDisplay(key);

    internal static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);
}

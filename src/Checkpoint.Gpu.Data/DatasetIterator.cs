using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace CheckpointGpu.Data;

/// <summary>
/// A trackable iterator over a <see cref="SequenceDataset"/>, in tf.data's terms
/// <c>shards.shuffle(seed).flat_map(sequences).shuffle(buffer, seed).batch(n, drop_remainder=True).repeat()</c>:
/// each epoch visits the shards in a seeded random order, reads each shard's sequences in order through a shuffle
/// buffer of <c>shuffleBufferSize</c> sequence ids (a seeded random draw per element), and groups them into batches of
/// <c>batchSize</c>; an epoch's last partial batch is dropped and the next epoch begins. It never ends.
/// </summary>
/// <remarks>
/// <para>Tracked like any other object: <c>new Checkpoint(("model", model), ("iterator", iterator))</c> saves its state
/// under <c>iterator/.ATTRIBUTES/ITERATOR_STATE</c>, the key TensorFlow uses for a <c>tf.data</c> iterator
/// (<c>tensorflow/python/data/ops/iterator_ops.py</c>, <c>_IteratorSaveable</c>: saveable name <c>ITERATOR</c>, spec
/// suffix <c>_STATE</c>). TensorFlow stores a DT_VARIANT there; this iterator stores a DT_STRING scalar holding a JSON
/// document (version, dataset fingerprint, configuration, epoch, source position, RNG state, shuffle-buffer ids), so
/// TensorFlow cannot resume it and it cannot resume TensorFlow's.</para>
/// <para>Restoring the state (restore-on-create included) makes the iterator yield exactly the batches the
/// uninterrupted iterator would have yielded next, in this or any other process. The state is captured when a save is
/// called (<c>SaveAsync</c> captures host state before it returns), so call saves between <see cref="GetNext"/> calls.</para>
/// <para>Thread-safety: not thread-safe.</para>
/// </remarks>
public sealed class DatasetIterator : TrackableState
{
    /// <summary>TF's attribute name for iterator state (<c>ITERATOR</c> + <c>_STATE</c>).</summary>
    public const string IteratorStateAttributeName = "ITERATOR_STATE";

    /// <summary>Version of the JSON state this class writes and reads.</summary>
    public const int StateVersion = 1;

    private readonly SequenceDataset _dataset;
    private readonly List<long> _buffer;
    private SplitMix64 _rng;
    private int[] _shardOrder = [];
    private long _epoch;
    private int _shardPosition;       // index into _shardOrder of the shard being read
    private long _indexInShard;       // next sequence index in that shard
    private long _batches;

    /// <summary>Creates an iterator at the start of epoch 0.</summary>
    /// <param name="dataset">The dataset (not owned; keep it alive while iterating).</param>
    /// <param name="batchSize">Sequences per batch, at least 1 and at most the dataset's <see cref="SequenceDataset.SequenceCount"/>.</param>
    /// <param name="shuffleBufferSize">Shuffle-buffer capacity in sequences; 1 disables element shuffling (shards are still visited in a seeded order). At most 16,777,216.</param>
    /// <param name="seed">Seed of the shard order and of the shuffle buffer's draws.</param>
    /// <exception cref="ArgumentOutOfRangeException">A size is out of range.</exception>
    /// <exception cref="DatasetException">The dataset holds fewer sequences than one batch (names the first file).</exception>
    public DatasetIterator(SequenceDataset dataset, int batchSize, int shuffleBufferSize, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(shuffleBufferSize, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(shuffleBufferSize, MaxShuffleBufferSize);
        if (dataset.SequenceCount < batchSize)
            throw new DatasetException($"The dataset ('{dataset.Files[0]}'{(dataset.Files.Count > 1 ? $" and {dataset.Files.Count - 1} more files" : "")}) holds {dataset.SequenceCount} sequences of {dataset.SequenceLength} bytes, fewer than one batch of {batchSize}.",
                dataset.Files[0]);
        _dataset = dataset;
        BatchSize = batchSize;
        ShuffleBufferSize = shuffleBufferSize;
        Seed = seed;
        _buffer = new List<long>(Math.Min(shuffleBufferSize, 1 << 16));
        _rng = SplitMix64.Derive(seed, ulong.MaxValue);
        StartEpoch(0);
    }

    /// <summary>Largest accepted shuffle buffer (bounds what a restored state may hold).</summary>
    public const int MaxShuffleBufferSize = 1 << 24;

    /// <inheritdoc/>
    protected override string AttributeName => IteratorStateAttributeName;

    /// <summary>Sequences per batch.</summary>
    public int BatchSize { get; }

    /// <summary>Shuffle-buffer capacity in sequences.</summary>
    public int ShuffleBufferSize { get; }

    /// <summary>The seed.</summary>
    public ulong Seed { get; }

    /// <summary>The dataset.</summary>
    public SequenceDataset Dataset => _dataset;

    /// <summary>0-based epoch the next batch belongs to (or starts, if the current one has too few sequences left).</summary>
    public long Epoch => _epoch;

    /// <summary>Batches returned so far (across epochs and resumes): the <see cref="SequenceBatch.Index"/> of the next batch.</summary>
    public long BatchesProduced => _batches;

    /// <summary>Full batches per epoch: <c>floor(SequenceCount / BatchSize)</c>.</summary>
    public long BatchesPerEpoch => _dataset.SequenceCount / BatchSize;

    /// <summary>Returns the next batch (tf.data's <c>get_next</c>); moves to the next epoch when one is exhausted.</summary>
    /// <returns>The batch.</returns>
    /// <exception cref="ObjectDisposedException">The dataset was disposed.</exception>
    public SequenceBatch GetNext()
    {
        var ids = new long[BatchSize];
        while (true)
        {
            var n = 0;
            while (n < BatchSize && TryNextElement(out var id)) ids[n++] = id;
            if (n == BatchSize) break;
            StartEpoch(_epoch + 1); // drop_remainder: the partial batch is discarded
        }
        var data = new byte[checked(BatchSize * _dataset.SequenceLength)];
        for (var i = 0; i < BatchSize; i++)
            _dataset.ReadSequence(ids[i], data.AsSpan(i * _dataset.SequenceLength, _dataset.SequenceLength));
        return new SequenceBatch(_batches++, _epoch, ids, data);
    }

    private void StartEpoch(long epoch)
    {
        _epoch = epoch;
        _shardPosition = 0;
        _indexInShard = 0;
        _buffer.Clear();
        _shardOrder = ShardOrder(epoch);
    }

    /// <summary>The epoch's shard order: a Fisher–Yates permutation from (seed, epoch) alone, so it needs no state.</summary>
    private int[] ShardOrder(long epoch)
    {
        var order = Enumerable.Range(0, _dataset.ShardCount).ToArray();
        var rng = SplitMix64.Derive(Seed, (ulong)epoch);
        for (var i = order.Length - 1; i > 0; i--)
        {
            var j = (int)rng.NextBelow(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }

    private bool TryPullSource(out long id)
    {
        while (_shardPosition < _shardOrder.Length)
        {
            var shard = _shardOrder[_shardPosition];
            if (_indexInShard < _dataset.ShardSequenceCount(shard))
            {
                id = _dataset.SequenceId(shard, _indexInShard++);
                return true;
            }
            _shardPosition++;
            _indexInShard = 0;
        }
        id = -1;
        return false;
    }

    private bool TryNextElement(out long id)
    {
        while (_buffer.Count < ShuffleBufferSize && TryPullSource(out var pulled)) _buffer.Add(pulled);
        if (_buffer.Count == 0)
        {
            id = -1;
            return false;
        }
        var j = (int)_rng.NextBelow(_buffer.Count);
        id = _buffer[j];
        _buffer[j] = _buffer[^1];
        _buffer.RemoveAt(_buffer.Count - 1);
        return true;
    }

    /// <summary>The iterator's state as a DT_STRING scalar (JSON; see the class remarks).</summary>
    /// <returns>The state tensor.</returns>
    public override HostTensor Serialize()
    {
        var state = new IteratorStateDocument
        {
            Version = StateVersion,
            Dataset = _dataset.Fingerprint,
            BatchSize = BatchSize,
            ShuffleBufferSize = ShuffleBufferSize,
            Seed = Seed.ToString(CultureInfo.InvariantCulture),
            Epoch = _epoch,
            Batches = _batches,
            ShardPosition = _shardPosition,
            IndexInShard = _indexInShard,
            Rng = _rng.State.ToString("x16", CultureInfo.InvariantCulture),
            Buffer = [.. _buffer],
        };
        return HostTensor.FromString(JsonSerializer.Serialize(state, IteratorStateJson.Default.IteratorStateDocument));
    }

    /// <summary>Applies a restored state; validated completely before anything changes.</summary>
    /// <param name="value">A DT_STRING scalar written by <see cref="Serialize"/>.</param>
    /// <exception cref="DatasetException">The state is malformed, of another version, or was written for another
    /// dataset (fingerprint), batch size, shuffle-buffer size or seed; the message says which.</exception>
    public override void Deserialize(HostTensor value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var file = _dataset.Files[0];
        if (value.Strings.Count != 1)
            throw new DatasetException($"Iterator state must be a string scalar, got {value.Strings.Count} elements.", file);
        IteratorStateDocument? s;
        try
        {
            s = JsonSerializer.Deserialize(value.Strings[0], IteratorStateJson.Default.IteratorStateDocument);
        }
        catch (JsonException ex)
        {
            throw new DatasetException($"Iterator state is not valid JSON: {ex.Message}", file, ex);
        }
        if (s is null) throw new DatasetException("Iterator state is empty (JSON null).", file);
        if (s.Version != StateVersion) throw new DatasetException($"Iterator state version {s.Version} is not supported (expected {StateVersion}).", file);
        if (s.Dataset != _dataset.Fingerprint)
            throw new DatasetException($"Iterator state was written for another dataset: checkpoint '{s.Dataset}', this dataset ('{file}'…) '{_dataset.Fingerprint}'.", file);
        if (s.BatchSize != BatchSize || s.ShuffleBufferSize != ShuffleBufferSize || s.Seed != Seed.ToString(CultureInfo.InvariantCulture))
            throw new DatasetException($"Iterator state was written with batch size {s.BatchSize}, shuffle buffer {s.ShuffleBufferSize}, seed {s.Seed}; this iterator has {BatchSize}, {ShuffleBufferSize}, {Seed}.", file);
        if (s.Epoch < 0 || s.Batches < 0)
            throw new DatasetException($"Iterator state has a negative epoch ({s.Epoch}) or batch count ({s.Batches}).", file);
        if (!ulong.TryParse(s.Rng, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var rng))
            throw new DatasetException($"Iterator state's RNG '{s.Rng}' is not a 64-bit hexadecimal number.", file);
        var order = ShardOrder(s.Epoch);
        if (s.ShardPosition < 0 || s.ShardPosition > order.Length)
            throw new DatasetException($"Iterator state's shard position {s.ShardPosition} is outside [0, {order.Length}].", file);
        var inShard = s.ShardPosition < order.Length ? _dataset.ShardSequenceCount(order[s.ShardPosition]) : 0;
        if (s.IndexInShard < 0 || s.IndexInShard > inShard)
            throw new DatasetException($"Iterator state's index {s.IndexInShard} is outside shard {(s.ShardPosition < order.Length ? order[s.ShardPosition] : -1)}'s {inShard} sequences.", file);
        var buffer = s.Buffer ?? [];
        if (buffer.Length > ShuffleBufferSize)
            throw new DatasetException($"Iterator state's shuffle buffer holds {buffer.Length} ids, more than its capacity {ShuffleBufferSize}.", file);
        var seen = new HashSet<long>();
        foreach (var id in buffer)
        {
            if (id < 0 || id >= _dataset.SequenceCount || !seen.Add(id))
                throw new DatasetException($"Iterator state's shuffle buffer holds an invalid or repeated sequence id {id} (dataset has {_dataset.SequenceCount}).", file);
        }
        _epoch = s.Epoch;
        _shardOrder = order;
        _shardPosition = s.ShardPosition;
        _indexInShard = s.IndexInShard;
        _batches = s.Batches;
        _rng = new SplitMix64(rng);
        _buffer.Clear();
        _buffer.AddRange(buffer);
    }
}

internal sealed class IteratorStateDocument
{
    [JsonPropertyName("version")] public int Version { get; set; }
    [JsonPropertyName("dataset")] public string Dataset { get; set; } = "";
    [JsonPropertyName("batch_size")] public int BatchSize { get; set; }
    [JsonPropertyName("shuffle_buffer_size")] public int ShuffleBufferSize { get; set; }
    // A string: JSON numbers above 2^53 lose precision in many readers.
    [JsonPropertyName("seed")] public string Seed { get; set; } = "";
    [JsonPropertyName("epoch")] public long Epoch { get; set; }
    [JsonPropertyName("batches")] public long Batches { get; set; }
    [JsonPropertyName("shard_position")] public int ShardPosition { get; set; }
    [JsonPropertyName("index_in_shard")] public long IndexInShard { get; set; }
    [JsonPropertyName("rng")] public string Rng { get; set; } = "";
    [JsonPropertyName("buffer")] public long[]? Buffer { get; set; }
}

[JsonSerializable(typeof(IteratorStateDocument))]
internal sealed partial class IteratorStateJson : JsonSerializerContext;

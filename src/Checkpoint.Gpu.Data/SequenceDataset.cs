using System.IO.MemoryMappedFiles;
using System.Text;

namespace CheckpointGpu.Data;

/// <summary>
/// A dataset of fixed-length byte sequences over memory-mapped files (tf.data's "dataset": an immutable description
/// of the elements; <see cref="DatasetIterator"/> walks it). Each file is split into shards of
/// <see cref="SequenceDatasetOptions.ShardSizeInBytes"/>; shard <c>s</c> holds the sequences starting at
/// <c>shardStart + i × stride</c> that end inside the shard. Every sequence has a global id in
/// [0, <see cref="SequenceCount"/>): shards in file order, sequences in offset order within a shard.
/// </summary>
/// <remarks>
/// Elements are bytes (a byte-level language model's tokens). The files are mapped read-only and never modified.
/// Thread-safety: reads (<see cref="ReadSequence"/>) are thread-safe; <see cref="Dispose"/> is not concurrent with reads.
/// </remarks>
public sealed unsafe class SequenceDataset : IDisposable
{
    private readonly MappedFile[] _files;
    private readonly Shard[] _shards;
    private readonly long[] _firstIds; // _firstIds[s] = id of shard s's first sequence; _firstIds[^1] = SequenceCount
    private bool _disposed;

    private SequenceDataset(MappedFile[] files, Shard[] shards, long[] firstIds, int sequenceLength, int stride, long shardSize)
    {
        _files = files;
        _shards = shards;
        _firstIds = firstIds;
        SequenceLength = sequenceLength;
        StrideInBytes = stride;
        ShardSizeInBytes = shardSize;
        Fingerprint = ComputeFingerprint();
    }

    /// <summary>Bytes per sequence.</summary>
    public int SequenceLength { get; }

    /// <summary>Distance between consecutive sequence starts in a shard, in bytes.</summary>
    public int StrideInBytes { get; }

    /// <summary>Bytes per shard (the last shard of a file may be shorter).</summary>
    public long ShardSizeInBytes { get; }

    /// <summary>The files, in the order given to <see cref="Open"/>.</summary>
    public IReadOnlyList<string> Files => _files.Select(f => f.Path).ToArray();

    /// <summary>Total size of the files in bytes.</summary>
    public long TotalBytes => _files.Sum(f => f.Length);

    /// <summary>Number of shards (including shards shorter than one sequence, which hold none).</summary>
    public int ShardCount => _shards.Length;

    /// <summary>Number of sequences in the dataset (one epoch).</summary>
    public long SequenceCount => _firstIds[^1];

    /// <summary>
    /// Identifies the dataset's layout independently of where its files live: file names (not directories) and
    /// lengths, sequence length, stride and shard size. An iterator state restored onto a dataset with another
    /// fingerprint is refused.
    /// </summary>
    public string Fingerprint { get; }

    /// <summary>Opens a dataset over one or more files.</summary>
    /// <param name="files">The files, in order (at least one). Each is memory-mapped read-only.</param>
    /// <param name="sequenceLength">Bytes per sequence, at least 1.</param>
    /// <param name="options">Sharding and stride; <see langword="null"/> for the defaults.</param>
    /// <returns>The dataset; dispose it to unmap the files.</returns>
    /// <exception cref="ArgumentException">No files, or an option is out of range.</exception>
    /// <exception cref="FileNotFoundException">A file does not exist (the message names it).</exception>
    /// <exception cref="DatasetException">A file is empty, or no shard is as long as <paramref name="sequenceLength"/>
    /// (the message names the file and its size).</exception>
    public static SequenceDataset Open(IReadOnlyList<string> files, int sequenceLength, SequenceDatasetOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(files);
        if (files.Count == 0) throw new ArgumentException("A dataset needs at least one file.", nameof(files));
        ArgumentOutOfRangeException.ThrowIfLessThan(sequenceLength, 1);
        options ??= new SequenceDatasetOptions();
        var stride = options.StrideInBytes ?? sequenceLength;
        if (stride < 1) throw new ArgumentException($"StrideInBytes must be positive, got {stride}.", nameof(options));
        if (options.ShardSizeInBytes < sequenceLength)
            throw new ArgumentException($"ShardSizeInBytes ({options.ShardSizeInBytes}) is smaller than the sequence length ({sequenceLength}).", nameof(options));

        var mapped = new List<MappedFile>(files.Count);
        try
        {
            foreach (var path in files)
            {
                ArgumentException.ThrowIfNullOrEmpty(path, nameof(files));
                mapped.Add(MappedFile.Open(Path.GetFullPath(path)));
            }
            var shards = new List<Shard>();
            var firstIds = new List<long> { 0 };
            for (var f = 0; f < mapped.Count; f++)
            {
                for (long start = 0; start < mapped[f].Length; start += options.ShardSizeInBytes)
                {
                    var length = Math.Min(options.ShardSizeInBytes, mapped[f].Length - start);
                    var count = length >= sequenceLength ? (length - sequenceLength) / stride + 1 : 0;
                    shards.Add(new Shard(f, start, count));
                    firstIds.Add(checked(firstIds[^1] + count));
                }
            }
            if (firstIds[^1] == 0)
            {
                var longest = mapped.MaxBy(m => m.Length)!;
                throw new DatasetException(mapped.Count == 1
                    ? $"Sequence length {sequenceLength} is longer than the data: '{longest.Path}' has {longest.Length} bytes."
                    : $"Sequence length {sequenceLength} is longer than the data: the longest of {mapped.Count} files, '{longest.Path}', has {longest.Length} bytes.",
                    longest.Path);
            }
            return new SequenceDataset([.. mapped], [.. shards], [.. firstIds], sequenceLength, stride, options.ShardSizeInBytes);
        }
        catch
        {
            foreach (var m in mapped) m.Dispose();
            throw;
        }
    }

    /// <summary>Number of sequences in shard <paramref name="shard"/>.</summary>
    /// <param name="shard">Shard index in [0, <see cref="ShardCount"/>).</param>
    /// <returns>The count (0 for a shard shorter than one sequence).</returns>
    /// <exception cref="ArgumentOutOfRangeException">Out of range.</exception>
    public long ShardSequenceCount(int shard)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(shard);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(shard, _shards.Length);
        return _shards[shard].Count;
    }

    /// <summary>The id of sequence <paramref name="index"/> of shard <paramref name="shard"/>.</summary>
    /// <param name="shard">Shard index.</param>
    /// <param name="index">Sequence index within the shard.</param>
    /// <returns>The global sequence id.</returns>
    /// <exception cref="ArgumentOutOfRangeException">Out of range.</exception>
    public long SequenceId(int shard, long index)
    {
        var count = ShardSequenceCount(shard);
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, count);
        return _firstIds[shard] + index;
    }

    /// <summary>Where a sequence lives.</summary>
    /// <param name="sequenceId">Id in [0, <see cref="SequenceCount"/>).</param>
    /// <returns>The file path and the byte offset of the sequence's first byte in it.</returns>
    /// <exception cref="ArgumentOutOfRangeException">Out of range.</exception>
    public (string Path, long Offset) Locate(long sequenceId)
    {
        var (file, offset) = Resolve(sequenceId);
        return (_files[file].Path, offset);
    }

    /// <summary>Copies one sequence.</summary>
    /// <param name="sequenceId">Id in [0, <see cref="SequenceCount"/>).</param>
    /// <param name="destination">At least <see cref="SequenceLength"/> bytes; the first <see cref="SequenceLength"/> are written.</param>
    /// <exception cref="ArgumentOutOfRangeException">The id is out of range.</exception>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is too short.</exception>
    /// <exception cref="ObjectDisposedException">Disposed.</exception>
    public void ReadSequence(long sequenceId, Span<byte> destination)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (destination.Length < SequenceLength)
            throw new ArgumentException($"Destination has {destination.Length} bytes, a sequence {SequenceLength}.", nameof(destination));
        var (file, offset) = Resolve(sequenceId);
        new ReadOnlySpan<byte>(_files[file].Pointer + offset, SequenceLength).CopyTo(destination);
    }

    private (int File, long Offset) Resolve(long sequenceId)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sequenceId);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(sequenceId, SequenceCount);
        // Last shard whose first id is <= sequenceId and which holds sequences.
        var s = Array.BinarySearch(_firstIds, 0, _shards.Length, sequenceId);
        if (s < 0) s = ~s - 1;
        while (_shards[s].Count == 0 || _firstIds[s] + _shards[s].Count <= sequenceId) s++;
        var shard = _shards[s];
        return (shard.File, shard.Start + (sequenceId - _firstIds[s]) * StrideInBytes);
    }

    private string ComputeFingerprint()
    {
        // FNV-1a over "name:length" of every file plus the layout; stable across processes and machines.
        var text = new StringBuilder();
        foreach (var f in _files) text.Append(System.IO.Path.GetFileName(f.Path)).Append(':').Append(f.Length).Append('\n');
        var hash = 14695981039346656037UL;
        foreach (var b in Encoding.UTF8.GetBytes(text.ToString())) hash = (hash ^ b) * 1099511628211UL;
        return string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"files={_files.Length};bytes={TotalBytes};seq={SequenceLength};stride={StrideInBytes};shard={ShardSizeInBytes};names={hash:x16}");
    }

    /// <summary>Unmaps the files.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var f in _files) f.Dispose();
    }

    private readonly record struct Shard(int File, long Start, long Count);

    private sealed class MappedFile : IDisposable
    {
        private readonly MemoryMappedFile _map;
        private readonly MemoryMappedViewAccessor _view;

        private MappedFile(string path, long length, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* pointer)
        {
            Path = path;
            Length = length;
            _map = map;
            _view = view;
            Pointer = pointer;
        }

        public string Path { get; }
        public long Length { get; }
        public byte* Pointer { get; }

        public static MappedFile Open(string path)
        {
            if (!File.Exists(path)) throw new FileNotFoundException($"Dataset file '{path}' does not exist.", path);
            var length = new FileInfo(path).Length;
            if (length == 0) throw new DatasetException($"Dataset file '{path}' is empty.", path);
            MemoryMappedFile? map = null;
            MemoryMappedViewAccessor? view = null;
            try
            {
                map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
                view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
                byte* pointer = null;
                view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
                return new MappedFile(path, length, map, view, pointer + view.PointerOffset);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException && ex is not FileNotFoundException)
            {
                view?.Dispose();
                map?.Dispose();
                throw new DatasetException($"Dataset file '{path}' cannot be mapped: {ex.Message}", path, ex);
            }
        }

        public void Dispose()
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
            _map.Dispose();
        }
    }
}

using CheckpointGpu.Format;

namespace CheckpointGpu.Pipeline;

/// <summary>Settings of a <see cref="CheckpointPipeline"/>.</summary>
/// <remarks>
/// <para>Init-only. A pipeline's constructor options are the default for its operations; a save or restore may bring
/// options of its own (<c>CheckpointPipeline.QueueSave(prefix, plan, options, …)</c>, <c>OpenRestore(index, options)</c>,
/// core's <c>CheckpointOptions.IO</c>), and the ring is re-shaped between operations to match. Defaults were measured on the reference VM (2 cores,
/// virtio disk, ext4; see <c>perf/Checkpoint.Gpu.Benchmarks/EndToEnd/RESULTS.md</c>, "Defaults").</para>
/// <para>Thread-safe (immutable).</para>
/// </remarks>
public sealed class CheckpointPipelineOptions
{
    private readonly int _slotSizeInBytes = DefaultSlotSizeInBytes;
    private readonly int _slotCount = DefaultSlotCount;
    private readonly int _writerCount = DefaultWriterCount;
    private readonly int _readerCount = DefaultReaderCount;
    private readonly long _restoreCacheBudgetInBytes = 64L << 20;
    private readonly long _copyOnWriteBudgetInBytes = 1L << 30;

    /// <summary>Default <see cref="SlotSizeInBytes"/>: 8 MiB.</summary>
    public const int DefaultSlotSizeInBytes = 8 << 20;

    /// <summary>Default <see cref="SlotCount"/>: 8 (a 64 MiB ring).</summary>
    public const int DefaultSlotCount = 8;

    /// <summary>Default <see cref="WriterCount"/>: 2.</summary>
    public const int DefaultWriterCount = 2;

    /// <summary>Default <see cref="ReaderCount"/>: 3.</summary>
    public const int DefaultReaderCount = 3;

    /// <summary>The defaults.</summary>
    public static CheckpointPipelineOptions Default { get; } = new();

    /// <summary>
    /// Size of one staging slot, in bytes: each slot is a file-aligned chunk of a data file and one write (or read)
    /// request. A multiple of 4096 (for <c>O_DIRECT</c>), at least 4096. Default 8 MiB: cold reads want ≥ 4 MiB
    /// requests (MACHINE-LIMITS.md); in the end-to-end sweep (<c>e2e --sweep</c>, 1 GiB, CPU device, RESULTS.md)
    /// saves with 1–32 MiB slots were all within the machine's noise (1.23–1.59 GB/s), so the read-side
    /// requirement decides.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Not a positive multiple of 4096.</exception>
    public int SlotSizeInBytes
    {
        get => _slotSizeInBytes;
        init
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, IShardFile.DirectIOAlignmentInBytes);
            if (value % IShardFile.DirectIOAlignmentInBytes != 0)
                throw new ArgumentOutOfRangeException(nameof(value), value, "The slot size must be a multiple of 4096 bytes.");
            _slotSizeInBytes = value;
        }
    }

    /// <summary>
    /// Number of slots in the ring, ≥ 2 (one filling while another is written). Ring memory is
    /// <see cref="SlotCount"/> × <see cref="SlotSizeInBytes"/>, allocated once per pipeline, pre-faulted and reused.
    /// Default 8 (64 MiB): 4 and 8 slots were within noise in the sweep; 8 leaves the copy engine room to run
    /// ahead of two writers.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Less than 2.</exception>
    public int SlotCount
    {
        get => _slotCount;
        init { ArgumentOutOfRangeException.ThrowIfLessThan(value, 2); _slotCount = value; }
    }

    /// <summary>
    /// Concurrent positional writes in flight, ≥ 1. Default 2: in the sweep one writer was the slowest
    /// (1.15 GB/s vs 1.26–1.50 with two; each writer also checksums its slot before writing it), four were no
    /// better than two.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Less than 1.</exception>
    public int WriterCount
    {
        get => _writerCount;
        init { ArgumentOutOfRangeException.ThrowIfLessThan(value, 1); _writerCount = value; }
    }

    /// <summary>
    /// Concurrent positional readers during a restore, ≥ 1; each reader also checksums the slot it read before taking
    /// the next one. Default 3, so that two reads stay in flight while a third reader checksums: cold O_DIRECT reads
    /// reach the disk limit with ≥ 4 MiB requests or two in flight (MACHINE-LIMITS.md). In the restore sweep
    /// (<c>e2e --restore-sweep</c>, loaded machine) three readers beat two (0.54× vs 0.41× fio read, 8 MiB × 8 slots).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Less than 1.</exception>
    public int ReaderCount
    {
        get => _readerCount;
        init { ArgumentOutOfRangeException.ThrowIfLessThan(value, 1); _readerCount = value; }
    }

    /// <summary>
    /// Use <c>O_DIRECT</c> for data files when the file system allows it (falls back to buffered IO on EINVAL).
    /// Default <see langword="true"/>: O_DIRECT beat buffered write + fsync by 1.6–3.3× on the reference VM
    /// (MACHINE-LIMITS.md) and keeps the page cache (and the balloon) out of the way.
    /// </summary>
    public bool UseDirectIO { get; init; } = true;

    /// <summary>How saves snapshot device memory. Default <see cref="SnapshotPolicy.BoundedRing"/>.</summary>
    public SnapshotPolicy SnapshotPolicy { get; init; } = SnapshotPolicy.BoundedRing;

    /// <summary>
    /// Host memory, in bytes, that <see cref="RestoreSession.PrefetchAsync"/> may use for entries whose destination
    /// does not exist yet (restore-on-create); the smallest entries are chosen first (their per-read cost dominates),
    /// larger ones are read through the ring straight into their new buffers when created. Default 64 MiB (peak extra
    /// host memory of a restore-on-create: ring + 64 MiB). 0 disables prefetching (claims then read on demand).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative.</exception>
    public long RestoreCacheBudgetInBytes
    {
        get => _restoreCacheBudgetInBytes;
        init { ArgumentOutOfRangeException.ThrowIfNegative(value); _restoreCacheBudgetInBytes = value; }
    }

    /// <summary>
    /// Keep a restore's scratch buffer for the next restore when the device's memory is host memory
    /// (<see cref="CheckpointGpu.Devices.Accelerator.DeviceMemoryIsHostMemory"/>: the CPU accelerators, native and ILGPU's, and OpenCL CPU devices
    /// such as PoCL), until a save runs through the pipeline or the pipeline is disposed. Default <see langword="true"/>.
    /// </summary>
    /// <remarks>
    /// A restore needs a scratch buffer as large as its largest tensor that does not fit in half the ring (verify before
    /// write; see <see cref="RestoreSession"/>). Fresh host memory is slow to touch: on the reference VM, populating
    /// 256 MiB took 0.09–0.45 s, and a 1 GiB cold restore reading into a fresh scratch ran at 0.71–0.86 GB/s against
    /// 1.44–1.56 GB/s into a kept one (<c>e2e --restore-loop</c>, same minutes). Repeated restores into a running model (an
    /// evaluator following a trainer's checkpoints) keep it; the first save hands it back, so a trainer that restores once
    /// and then saves does not hold it. On PoCL (OpenCL 2 GiB, <c>e2e --restore-loop</c>): 0.74–1.00× a raw read of the
    /// file kept, 0.59–0.67× fresh (system CPU 0.10–0.17 s vs 0.8–1.3 s per restore). A GPU's scratch is never kept.
    /// </remarks>
    public bool RetainRestoreScratch { get; init; } = true;

    /// <summary>
    /// Device memory, in bytes, that write barriers may use for copy-on-write clones under
    /// <see cref="SnapshotPolicy.WriteBarriers"/>. Default 1 GiB. 0 makes barriers wait for staging.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative.</exception>
    public long CopyOnWriteBudgetInBytes
    {
        get => _copyOnWriteBudgetInBytes;
        init { ArgumentOutOfRangeException.ThrowIfNegative(value); _copyOnWriteBudgetInBytes = value; }
    }

    /// <summary>
    /// Optional trace of every save's stages per staging slot (device copy, checksum, write), for timelines and
    /// tuning ring size and writer count. Called from the copy engine's and the writers' threads concurrently, so it
    /// must be thread-safe and cheap; an exception it throws fails the save. Default <see langword="null"/>: no
    /// timestamps are taken.
    /// </summary>
    public Action<SaveTraceEvent>? SaveTrace { get; init; }

    /// <summary>The storage seam. Default <see cref="LocalShardStorage.Instance"/>.</summary>
    public IShardStorage Storage { get; init; } = LocalShardStorage.Instance;

    /// <summary>
    /// How long synchronous disposal (<see cref="CheckpointPipeline.Dispose"/>, and <c>Checkpoint.Dispose</c> through it)
    /// waits for queued saves before throwing a <see cref="TimeoutException"/> that names them. Default 10 minutes;
    /// <see cref="Timeout.InfiniteTimeSpan"/> waits forever.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative (other than <see cref="Timeout.InfiniteTimeSpan"/>).</exception>
    public TimeSpan DisposeTimeout
    {
        get => _disposeTimeout;
        init
        {
            if (value < TimeSpan.Zero && value != Timeout.InfiniteTimeSpan) throw new ArgumentOutOfRangeException(nameof(value), value, "Must be non-negative or infinite.");
            _disposeTimeout = value;
        }
    }

    private TimeSpan _disposeTimeout = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Benchmark-only switch: when false the pipeline skips CRC32C and records 0 as every checksum, so the files
    /// fail verification. Used to measure the cost of checksumming; never disable it otherwise.
    /// </summary>
    internal bool ComputeChecksums { get; init; } = true;
}

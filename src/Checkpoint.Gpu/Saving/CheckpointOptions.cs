using CheckpointGpu.Pipeline;
namespace CheckpointGpu;

/// <summary>
/// Options for saving and restoring (TF's <c>tf.train.CheckpointOptions</c>,
/// <c>tensorflow/python/checkpoint/checkpoint_options.py</c>; spec §9).
/// </summary>
/// <remarks>
/// Freezes on first use: once passed to a save or restore, setters throw <see cref="InvalidOperationException"/>
/// (copy it with the copy constructor to change it). Thread-safety: safe to share once frozen.
/// </remarks>
public sealed class CheckpointOptions
{
    private string? _ioDevice;
    private bool _skipSlotVariables;
    private IShardingPolicy _shardingPolicy = ShardByTaskPolicy.Instance;
    private IReadOnlyList<Action<string>> _writeCallbacks = [];
    private bool _writeHasCheckpointValues = true;
    private Distributed.WorkerContext? _multiWorker;
    private CheckpointPipeline? _pipeline;
    private Format.BundleCompressionOptions? _compression;   // issue 14
    private CheckpointPipelineOptions? _io;
    private volatile bool _frozen;

    /// <summary>Creates options with the defaults.</summary>
    public CheckpointOptions() { }

    /// <summary>Creates an unfrozen copy of <paramref name="other"/>.</summary>
    /// <param name="other">Options to copy.</param>
    public CheckpointOptions(CheckpointOptions other)
    {
        ArgumentNullException.ThrowIfNull(other);
        _ioDevice = other._ioDevice;
        _skipSlotVariables = other._skipSlotVariables;
        _shardingPolicy = other._shardingPolicy;
        _writeCallbacks = other._writeCallbacks;
        _writeHasCheckpointValues = other._writeHasCheckpointValues;
        _multiWorker = other._multiWorker;
        _pipeline = other._pipeline;
        _compression = other._compression;
        _io = other._io;
    }

    /// <summary>Shared frozen defaults.</summary>
    public static CheckpointOptions Default { get; } = new CheckpointOptions().Freeze();

    /// <summary>
    /// TF's <c>experimental_io_device</c> (<c>tensorflow/python/checkpoint/checkpoint_options.py</c>): the device that
    /// performs checkpoint IO, as a TensorFlow device string (<see cref="IODeviceSpec"/>,
    /// <c>tensorflow/python/framework/device_spec.py</c>). In this engine checkpoint IO always runs on this process's
    /// host through the pinned staging ring, so the accepted values are <see langword="null"/> (default) and the
    /// strings that name the local host CPU — <c>/cpu:0</c>, <c>/device:CPU:0</c>, <c>/job:localhost</c>,
    /// <c>/job:localhost/replica:0/task:0/device:CPU:0</c> and equivalent spellings. No effect on the file format.
    /// </summary>
    /// <exception cref="ArgumentException">Set to a malformed device string, or to one naming an accelerator
    /// (<c>/device:GPU:0</c>), another job, replica or task; the message names the value and the accepted forms.
    /// Checked when set, so a bad value never reaches a save or restore.</exception>
    /// <exception cref="InvalidOperationException">The options are frozen.</exception>
    public string? IODevice
    {
        get => _ioDevice;
        set { VerifyMutable(); IODeviceSpec.Validate(value, nameof(value)); _ioDevice = value; }
    }

    /// <summary>TF's <c>experimental_skip_slot_variables</c>: restores ignore optimizer slot variables. Default false.</summary>
    /// <exception cref="InvalidOperationException">The options are frozen.</exception>
    public bool SkipSlotVariables { get => _skipSlotVariables; set { VerifyMutable(); _skipSlotVariables = value; } }

    /// <summary>How tensors are grouped into data files (TF's <c>experimental_sharding_callback</c>). Default <see cref="ShardByTaskPolicy"/> (one file).</summary>
    /// <exception cref="ArgumentNullException">Set to null.</exception>
    /// <exception cref="InvalidOperationException">The options are frozen.</exception>
    public IShardingPolicy ShardingPolicy
    {
        get => _shardingPolicy;
        set { VerifyMutable(); ArgumentNullException.ThrowIfNull(value); _shardingPolicy = value; }
    }

    /// <summary>
    /// TF's <c>experimental_write_callbacks</c>: called in order with the written prefix after each save/write is
    /// complete (files committed). Default none.
    /// </summary>
    /// <exception cref="InvalidOperationException">The options are frozen.</exception>
    public IReadOnlyList<Action<string>> WriteCallbacks
    {
        get => _writeCallbacks;
        set { VerifyMutable(); ArgumentNullException.ThrowIfNull(value); _writeCallbacks = value.ToArray(); }
    }

    /// <summary>
    /// Write the <c>has_checkpoint_values</c> field (5) of every object-graph node, as current TensorFlow does
    /// (default true). Set false to reproduce, byte for byte, graphs written by older TF 2.x releases (for example
    /// 2.3), which did not have the field; restores treat its absence the same way TF does.
    /// </summary>
    /// <exception cref="InvalidOperationException">The options are frozen.</exception>
    public bool WriteHasCheckpointValues { get => _writeHasCheckpointValues; set { VerifyMutable(); _writeHasCheckpointValues = value; } }

    /// <summary>
    /// Multi-worker save: this process is one worker of a job whose workers share a filesystem. Each worker writes the
    /// tensors it owns to <c>&lt;prefix&gt;_temp/part-r-of-N</c>; the chief (rank 0) waits for every worker's completion
    /// marker, merges the parts into one checkpoint and is the only one to update the state file and prune. Default
    /// <see langword="null"/> (single process). See <see cref="Distributed.WorkerContext"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The options are frozen.</exception>
    public Distributed.WorkerContext? MultiWorker { get => _multiWorker; set { VerifyMutable(); _multiWorker = value; } }

    /// <summary>
    /// The IO device for every save (synchronous saves are its saves, waited for) and for <c>RestoreAsync</c>: a
    /// <see cref="CheckpointPipeline"/> (pinned staging ring, copy engine, positional writers) on the accelerator that
    /// holds the variables. The caller owns it and may share it between checkpoints; its own
    /// <see cref="CheckpointPipeline.Options"/> then apply and <see cref="IO"/> is ignored. Default <see langword="null"/>:
    /// each saver creates one on first use, on the accelerator holding the most bytes, with <see cref="IO"/>, and frees it
    /// when the checkpoint is disposed. TF's analogue is <c>experimental_io_device</c> + <c>enable_async</c>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The options are frozen.</exception>
    public CheckpointPipeline? Pipeline { get => _pipeline; set { VerifyMutable(); _pipeline = value; } }

    /// <summary>
    /// Issue 14: LZ4-compress each whole fixed-size tensor in the writers (blocks of one tensor in parallel, optional
    /// byte shuffle for floating-point dtypes; <see cref="Format.BundleCompression"/>). Default <see langword="null"/>
    /// (off): plain TensorFlow checkpoints. A compressed checkpoint is refused by TensorFlow with "Checkpoint min consumer
    /// version 2 above current version 1" (header version check, see <see cref="Format.BundleHeader.CompressedVersion"/>)
    /// and read transparently here; <c>ckpt convert</c> turns it into a plain one. Synchronous saves (<c>Save</c>/<c>Write</c>,
    /// <see cref="CheckpointManager.Save"/> including incremental saves) compress in the bundle writer directly. Asynchronous
    /// saves (<c>SaveAsync</c>/<c>WriteAsync</c>, <see cref="CheckpointManager.SaveAsync"/>) stage a plain bundle through the IO
    /// pipeline (<c>&lt;prefix&gt;_temp/plain</c>, with the pipeline's snapshot semantics) and compress it into the checkpoint
    /// on Format's IO threads once it is durable — entry for entry the synchronous result, at the price of writing the plain
    /// bytes once more. Multi-worker saves and incremental asynchronous saves refuse it with <see cref="NotSupportedException"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The options are frozen.</exception>
    public Format.BundleCompressionOptions? Compression { get => _compression; set { VerifyMutable(); _compression = value; } }

    /// <summary>
    /// The IO settings in one object (ring: <see cref="CheckpointPipelineOptions.SlotSizeInBytes"/> ×
    /// <see cref="CheckpointPipelineOptions.SlotCount"/> bytes; writers; reads in flight; prefetch bytes
    /// <see cref="CheckpointPipelineOptions.RestoreCacheBudgetInBytes"/>; O_DIRECT; the storage seam every file
    /// operation goes through, including the state file and pruning). Applied per call: every save and restore runs with
    /// the IO settings of its own options — the saver's IO pipeline re-creates its staging ring between operations when
    /// the slot size or count differ (nothing is frozen when the pipeline was created). Default <see langword="null"/>:
    /// <see cref="CheckpointPipelineOptions.Default"/>. Ignored when <see cref="Pipeline"/> is set (that pipeline's own
    /// options apply).
    /// </summary>
    /// <exception cref="InvalidOperationException">The options are frozen.</exception>
    public CheckpointPipelineOptions? IO { get => _io; set { VerifyMutable(); _io = value; } }

    /// <summary>The storage seam in effect: that of <see cref="Pipeline"/>, else of <see cref="IO"/>, else local files.</summary>
    internal Format.IShardStorage Storage => (_pipeline?.Options ?? _io ?? CheckpointPipelineOptions.Default).Storage;

    /// <summary>True once the options were used (or <see cref="Freeze"/> was called).</summary>
    public bool IsFrozen => _frozen;

    /// <summary>Makes the options read-only.</summary>
    /// <returns>This instance.</returns>
    public CheckpointOptions Freeze()
    {
        _frozen = true;
        return this;
    }

    private void VerifyMutable()
    {
        if (_frozen) throw new InvalidOperationException("These CheckpointOptions are read-only: they have already been used. Copy them to change a setting.");
    }
}

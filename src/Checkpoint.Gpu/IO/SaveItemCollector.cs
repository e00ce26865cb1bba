using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;

namespace CheckpointGpu.IO;

/// <summary>
/// An <see cref="ITensorWriter"/> that records what a save would write as <see cref="SaveItem"/>s for the IO
/// pipeline's <see cref="SavePlan"/>, in the same data order and shards the synchronous writer uses (so both paths
/// produce the same bytes).
/// </summary>
/// <remarks>
/// Variables on the pipeline's accelerator are streamed from their device buffers by the pipeline (their bytes are read
/// later, under the pipeline's snapshot policy and write barriers). Variables on any other accelerator (for example
/// the save counter, which lives on a small CPU accelerator of its own) are copied to host memory here, when the save
/// is queued: a synchronous device read, meant for small state.
/// </remarks>
internal sealed class SaveItemCollector(Accelerator pipelineAccelerator) : ITensorWriter
{
    /// <summary>Values on other accelerators up to this size are snapshotted at plan time (device-side clone).</summary>
    internal const long SmallForeignValueBytes = 64 << 10;

    private readonly List<SaveItem> _items = [];

    public IReadOnlyList<SaveItem> Items => _items;

    /// <summary>Device-side snapshots made while planning; the caller disposes them when the save is finished.</summary>
    public List<DeviceBuffer> Clones { get; } = [];

    public void AddVariable(string key, Variable variable, int shardId)
    {
        _items.Add(new SaveItem(key, variable.DType, variable.Shape, Source(variable), shardId));
    }

    /// <summary>
    /// Every variable is a device source, on whichever accelerator it lives: the pipeline runs one copy engine per
    /// accelerator into the same ring (never a synchronous host read). Small values on an accelerator other than the
    /// ring's — the save counter on its own accelerator, step counters — are mutated without write barriers, so they are
    /// snapshotted now by a device-side copy enqueued on their accelerator's default stream: ordered before any later
    /// assignment, and complete before the save is queued (the caller synchronizes the default streams after planning).
    /// </summary>
    private SaveSource Source(Variable variable)
    {
        if (ReferenceEquals(variable.Accelerator, pipelineAccelerator) || variable.LengthInBytes == 0 || variable.LengthInBytes > SmallForeignValueBytes)
            return SaveSource.FromDevice(variable.Buffer.AsView());
        var clone = variable.Accelerator.Allocate(variable.LengthInBytes);
        Clones.Add(clone);
        variable.Accelerator.DefaultStream.EnqueueCopy(variable.Buffer.AsView(), clone.AsView());
        return SaveSource.FromDevice(clone.AsView());
    }

    public void AddHost(string key, HostTensor tensor, int shardId)
    {
        var source = tensor.DType == DType.String
            ? SaveSource.FromEncoded(EncodedTensor.FromStrings(tensor.Strings))
            : SaveSource.FromHost(tensor.Bytes);
        _items.Add(new SaveItem(key, tensor.DType, tensor.Shape, source, shardId));
    }

    /// <summary>One slice of a partitioned variable (TF's slice entries, written by the pipeline like <c>BundleWriter::AddSlice</c>).</summary>
    public void AddVariableSlice(string fullKey, TensorShape fullShape, TensorSlice slice, Variable variable, int shardId) =>
        _items.Add(SaveItem.ForSlice(fullKey, variable.DType, fullShape, slice, Source(variable), shardId));

    /// <summary>The object graph, last in the data file (TF's order, spec §4.1).</summary>
    public void AddObjectGraph(byte[] graphBytes, int shardId) =>
        _items.Add(new SaveItem(CheckpointKeys.ObjectGraph, DType.String, TensorShape.Scalar,
            SaveSource.FromEncoded(EncodedTensor.FromStrings([graphBytes])), shardId));
}

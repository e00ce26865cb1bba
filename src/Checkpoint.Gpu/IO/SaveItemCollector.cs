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
    private readonly List<SaveItem> _items = [];

    public IReadOnlyList<SaveItem> Items => _items;

    public void AddVariable(string key, Variable variable, int shardId)
    {
        _items.Add(new SaveItem(key, variable.DType, variable.Shape, Source(variable), shardId));
    }

    private SaveSource Source(Variable variable) => ReferenceEquals(variable.Accelerator, pipelineAccelerator)
        ? SaveSource.FromDevice(variable.Buffer.AsView())
        : SaveSource.FromHost(variable.ReadBytes());

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
        _items.Add(new SaveItem(CheckpointNames.ObjectGraph, DType.String, TensorShape.Scalar,
            SaveSource.FromEncoded(EncodedTensor.FromStrings([graphBytes])), shardId));
}

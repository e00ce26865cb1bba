using CheckpointGpu.Format;

namespace CheckpointGpu.IO;

/// <summary>
/// The synchronous <see cref="ITensorWriter"/> over <see cref="TensorBundleWriter"/>: device → host chunk → data
/// file. Used only by <see cref="TrackableSaver.WriteUnits"/> (LZ4-compressed saves, incremental parts); every other save goes through the IO pipeline.
/// </summary>
internal sealed class BundleTensorWriter(TensorBundleWriter writer) : ITensorWriter
{
    private const int ChunkBytes = 4 << 20;

    public void AddVariable(string key, Variable variable, int shardId)
    {
        var size = variable.LengthInBytes;
        writer.Add(key, variable.DType, variable.Shape, size, (buffer, offset) =>
        {
            var n = (int)Math.Min(Math.Min(buffer.Length, ChunkBytes), size - offset);
            variable.CopyToHost(offset, buffer[..n]);
            return n;
        }, shardId);
    }

    public void AddVariableSlice(string fullKey, TensorShape fullShape, TensorSlice slice, Variable variable, int shardId)
    {
        // AddSlice takes the slice in one span: slices are bounded by one array (2 GiB) on this synchronous path.
        writer.AddSlice(fullKey, fullShape, slice, variable.DType, variable.ReadBytes(), shardId);
    }

    public void AddHost(string key, HostTensor tensor, int shardId)
    {
        if (tensor.DType == DType.String)
            writer.AddStrings(key, tensor.Shape, tensor.Strings, shardId);
        else
            writer.Add(key, tensor.DType, tensor.Shape, tensor.Bytes.Span, shardId);
    }
}

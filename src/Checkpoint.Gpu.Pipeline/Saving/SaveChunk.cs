namespace CheckpointGpu.Pipeline.Saving;

/// <summary>A piece of one tensor inside one chunk.</summary>
/// <param name="Tensor">Index in the plan.</param>
/// <param name="OffsetInTensor">Byte offset in the tensor's payload.</param>
/// <param name="LengthInBytes">Length in bytes.</param>
/// <param name="OffsetInSlot">Byte offset in the slot (= file offset − chunk offset).</param>
internal readonly record struct ChunkPiece(int Tensor, long OffsetInTensor, int LengthInBytes, int OffsetInSlot);

/// <summary>A file-aligned window of one data file: [<see cref="FileOffset"/>, +<see cref="LengthInBytes"/>).</summary>
internal sealed class SaveChunk(int shard, long fileOffset, int lengthInBytes, ChunkPiece[] pieces)
{
    public int Shard { get; } = shard;

    public long FileOffset { get; } = fileOffset;

    public int LengthInBytes { get; } = lengthInBytes;

    public ChunkPiece[] Pieces { get; } = pieces;

    /// <summary>
    /// Cuts each shard of <paramref name="plan"/> into consecutive chunks of <paramref name="chunkSize"/> bytes
    /// (the last one shorter) and lists the tensor pieces each one holds. Zero-size tensors have no pieces.
    /// </summary>
    public static IEnumerable<SaveChunk> Enumerate(SavePlan plan, int chunkSize)
    {
        var pieces = new List<ChunkPiece>();
        for (var s = 0; s < plan.ShardCount; s++)
        {
            var tensors = plan.GetShardTensors(s);
            var size = plan.ShardSizes[s];
            var t = 0;
            for (long fo = 0; fo < size; fo += chunkSize)
            {
                var end = Math.Min(fo + chunkSize, size);
                pieces.Clear();
                while (t < tensors.Count)
                {
                    var pt = tensors[t];
                    if (pt.Size == 0) { t++; continue; }
                    if (pt.Offset >= end) break;
                    var start = Math.Max(fo, pt.Offset);
                    var stop = Math.Min(end, pt.Offset + pt.Size);
                    pieces.Add(new ChunkPiece(pt.Index, start - pt.Offset, (int)(stop - start), (int)(start - fo)));
                    if (pt.Offset + pt.Size <= end) t++;
                    else break;
                }
                yield return new SaveChunk(s, fo, (int)(end - fo), pieces.ToArray());
            }
        }
    }
}

namespace CheckpointGpu.Format;

/// <summary>Receives consecutive chunks of a tensor payload while it streams from a data file.</summary>
/// <param name="chunk">The next bytes; valid only during the call.</param>
/// <param name="offsetInTensor">Byte offset of <paramref name="chunk"/> from the start of the payload.</param>
public delegate void TensorChunkHandler(ReadOnlySpan<byte> chunk, long offsetInTensor);

/// <summary>Supplies consecutive chunks of a tensor payload to <see cref="TensorBundleWriter"/>.</summary>
/// <param name="buffer">Buffer to fill; its length never exceeds the bytes still expected.</param>
/// <param name="offsetInTensor">Byte offset in the payload of <c>buffer[0]</c>.</param>
/// <returns>Number of bytes written to <paramref name="buffer"/> (1..buffer.Length); 0 means the source ended early, which is an error.</returns>
public delegate int TensorChunkSource(Span<byte> buffer, long offsetInTensor);

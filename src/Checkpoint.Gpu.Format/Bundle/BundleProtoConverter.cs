using CheckpointGpu.Format.Protos;
using Google.Protobuf;

namespace CheckpointGpu.Format;

/// <summary>Domain types ↔ generated protobuf messages, with validation of file-provided values.</summary>
internal static class BundleProtoConverter
{
    public static BundleHeaderProto ToProto(BundleHeader header)
    {
        var version = new VersionDef { Producer = header.Producer, MinConsumer = header.MinConsumer };
        version.BadConsumers.AddRange(header.BadConsumers);
        return new BundleHeaderProto
        {
            NumShards = header.ShardCount,
            Endianness = (BundleHeaderProto.Types.Endianness)(int)header.Endianness,
            Version = version,
        };
    }

    public static BundleEntryProto ToProto(BundleEntry entry)
    {
        var proto = new BundleEntryProto
        {
            Dtype = (DataType)(int)entry.DType,
            Shape = ToProto(entry.Shape),
            ShardId = entry.ShardId,
            Offset = entry.Offset,
            Size = entry.Size,
            Crc32C = entry.Crc32C,
        };
        foreach (var slice in entry.Slices) proto.Slices.Add(ToProto(slice));
        if (entry.Compression is { } c) BundleCompression.ToProto(proto, c);   // issue 14
        return proto;
    }

    public static TensorShapeProto ToProto(TensorShape shape)
    {
        var proto = new TensorShapeProto();
        foreach (var d in shape.AsSpan()) proto.Dim.Add(new TensorShapeProto.Types.Dim { Size = d });
        return proto;
    }

    public static TensorSliceProto ToProto(TensorSlice slice)
    {
        var proto = new TensorSliceProto();
        foreach (var e in slice.Extents)
        {
            // A whole dimension is an empty Extent; otherwise start (omitted when 0) and length (always, it is in a oneof).
            var extent = new TensorSliceProto.Types.Extent();
            if (!e.IsFull)
            {
                extent.Start = e.Start;
                extent.Length = e.Length;
            }
            proto.Extent.Add(extent);
        }
        return proto;
    }

    public static byte[] Serialize(IMessage message) => message.ToByteArray();

    public static BundleHeader ParseHeader(ReadOnlySpan<byte> value, string path)
    {
        // A V1 table stores a SavedTensorSlices under the empty key: field 1 length-delimited (0x0A), spec 10.8.
        if (!value.IsEmpty && value[0] == 0x0A)
            ThrowHelper.Format(CheckpointFormatError.LegacyV1Checkpoint, path,
                "this is a TF V1 (pre-1.0 Saver write_version=V1) checkpoint table, which is not supported; re-save it with TF >= 1.x (V2 format) or tf.train.Checkpoint");
        BundleHeaderProto proto;
        try
        {
            proto = BundleHeaderProto.Parser.ParseFrom(value.ToArray());
        }
        catch (InvalidProtocolBufferException ex)
        {
            return ThrowHelper.Format<BundleHeader>(CheckpointFormatError.MalformedProto, path, "the bundle header cannot be parsed (corrupt file or newer format)",
                key: "", inner: ex);
        }
        if (proto.NumShards < 1)
            ThrowHelper.Format(CheckpointFormatError.InvalidShardId, path, "the bundle header's num_shards is not positive", key: "",
                comparison: $"expected >= 1, found {proto.NumShards}");
        var endianness = (int)proto.Endianness;
        if (endianness is not (0 or 1))
            ThrowHelper.Format(CheckpointFormatError.MalformedProto, path, "the bundle header has an unknown endianness", key: "",
                comparison: $"expected 0 (LITTLE) or 1 (BIG), found {endianness}");
        var version = proto.Version ?? new VersionDef();
        // versions.cc with consumer = kTensorBundleVersion (1), min_producer = 0.
        if (version.Producer < 0)
            ThrowHelper.Format(CheckpointFormatError.UnsupportedVersion, path, "the bundle's producer version is negative", key: "",
                comparison: $"found producer {version.Producer}");
        // This reader is consumer version 2: it also reads compressed bundles (BundleHeader.CompressedVersion, issue 14).
        if (version.MinConsumer > BundleHeader.CompressedVersion)
            ThrowHelper.Format(CheckpointFormatError.UnsupportedVersion, path, "the bundle requires a newer reader", key: "",
                comparison: $"min_consumer {version.MinConsumer}, this reader is version {BundleHeader.CompressedVersion}");
        if (version.BadConsumers.Contains(BundleHeader.CurrentVersion))
            ThrowHelper.Format(CheckpointFormatError.UnsupportedVersion, path, "the bundle disallows this reader version", key: "",
                comparison: $"bad_consumers contains {BundleHeader.CurrentVersion}");
        return new BundleHeader(proto.NumShards, (BundleEndianness)endianness, version.Producer, version.MinConsumer, version.BadConsumers.ToArray());
    }

    public static BundleEntry ParseEntry(byte[] keyBytes, ReadOnlySpan<byte> value, string path, BundleHeader header, TensorBundleReaderOptions options, long valueOffset)
    {
        var key = CheckpointKeys.ToDisplay(keyBytes);
        BundleEntryProto proto;
        try
        {
            proto = BundleEntryProto.Parser.ParseFrom(value.ToArray());
        }
        catch (InvalidProtocolBufferException ex)
        {
            return ThrowHelper.Format<BundleEntry>(CheckpointFormatError.MalformedProto, path, "a bundle entry cannot be parsed", key, offset: valueOffset,
                length: value.Length, inner: ex);
        }

        var dtype = (DType)(int)proto.Dtype;
        if (!DTypes.IsDefined(dtype))
            ThrowHelper.Format(CheckpointFormatError.UnknownDType, path, "entry has an unknown dtype", key, offset: valueOffset,
                comparison: $"found DataType {(int)proto.Dtype}");

        var shape = ParseShape(proto.Shape, path, key, options, valueOffset);
        if (!shape.TryGetElementCount(out var elements))
            ThrowHelper.Format(CheckpointFormatError.Overflow, path, "entry shape has more elements than fit in 64 bits", key, offset: valueOffset,
                comparison: $"shape {shape}");

        var slices = Array.Empty<TensorSlice>();
        if (proto.Slices.Count > 0)
        {
            slices = new TensorSlice[proto.Slices.Count];
            for (var i = 0; i < slices.Length; i++) slices[i] = ParseSlice(proto.Slices[i], shape, path, key, valueOffset);
        }
        else
        {
            if (proto.ShardId < 0 || proto.ShardId >= header.ShardCount)
                ThrowHelper.Format(CheckpointFormatError.InvalidShardId, path, "entry names a data shard that does not exist", key, proto.ShardId, valueOffset,
                    comparison: $"expected 0 <= shard_id < {header.ShardCount}, found {proto.ShardId}");
            if (proto.Offset < 0 || proto.Size < 0)
                ThrowHelper.Format(CheckpointFormatError.InvalidOffset, path, "entry has a negative offset or size", key, proto.ShardId, proto.Offset, proto.Size);
            if (proto.Offset > long.MaxValue - proto.Size)
                ThrowHelper.Format(CheckpointFormatError.Overflow, path, "entry offset + size overflows 64 bits", key, proto.ShardId, proto.Offset, proto.Size);
            if (proto.Size > options.MaxTensorBytes)
                ThrowHelper.Format(CheckpointFormatError.LimitExceeded, path, "entry is larger than MaxTensorBytes", key, proto.ShardId, proto.Offset, proto.Size,
                    $"limit {options.MaxTensorBytes} bytes");
            var width = DTypes.GetElementSizeOrZero(dtype);
            if (proto.CheckpointGpuCompression is { } compression)
            {
                // Issue 14: the declared (uncompressed) size is checked against dtype × shape here, before anything is
                // allocated or decompressed; proto.Size is the stored byte count.
                var parsed = BundleCompression.Parse(compression, proto, dtype, shape, elements, width, header, path, key);
                var compressedEntry = new BundleEntry(key, dtype, shape, proto.ShardId, proto.Offset, compression.UncompressedSize, proto.Crc32C, slices)
                    { Compression = parsed };
                return CheckpointKeys.IsPlainUtf8(keyBytes, key) ? compressedEntry : compressedEntry with { KeyUtf8 = keyBytes };
            }
            if (width != 0)
            {
                // Size must be exactly elements × width for fixed-size dtypes (TF: "Invalid size in bundle entry").
                if (elements > long.MaxValue / width || elements * width != proto.Size)
                    ThrowHelper.Format(CheckpointFormatError.SizeMismatch, path, "entry size does not match its dtype and shape", key, proto.ShardId, proto.Offset, proto.Size,
                        $"expected {(elements > long.MaxValue / width ? "overflow" : (elements * width).ToString(System.Globalization.CultureInfo.InvariantCulture))} bytes ({DTypes.GetName(dtype)} {shape}), found {proto.Size}");
            }
        }

        var entry = new BundleEntry(key, dtype, shape, proto.ShardId, proto.Offset, proto.Size, proto.Crc32C, slices);
        return CheckpointKeys.IsPlainUtf8(keyBytes, key) ? entry : entry with { KeyUtf8 = keyBytes };
    }

    private static TensorShape ParseShape(TensorShapeProto? proto, string path, string key, TensorBundleReaderOptions options, long valueOffset)
    {
        if (proto is null) return TensorShape.Scalar;
        if (proto.UnknownRank)
            ThrowHelper.Format(CheckpointFormatError.InvalidShape, path, "entry shape has unknown rank", key, offset: valueOffset);
        if (proto.Dim.Count > options.MaxRank)
            ThrowHelper.Format(CheckpointFormatError.LimitExceeded, path, "entry shape has more dimensions than MaxRank", key, offset: valueOffset,
                comparison: $"limit {options.MaxRank}, found {proto.Dim.Count}");
        var dims = new long[proto.Dim.Count];
        for (var i = 0; i < dims.Length; i++)
        {
            var d = proto.Dim[i].Size;
            if (d < 0)
                ThrowHelper.Format(CheckpointFormatError.InvalidShape, path, "entry shape has a negative dimension", key, offset: valueOffset,
                    comparison: $"dimension {i} is {d}");
            dims[i] = d;
        }
        return new TensorShape(dims);
    }

    private static TensorSlice ParseSlice(TensorSliceProto proto, TensorShape fullShape, string path, string key, long valueOffset)
    {
        if (proto.Extent.Count != fullShape.Rank)
            ThrowHelper.Format(CheckpointFormatError.InvalidSlice, path, "slice rank differs from the tensor rank", key, offset: valueOffset,
                comparison: $"expected {fullShape.Rank} extents, found {proto.Extent.Count}");
        var extents = new TensorSliceExtent[proto.Extent.Count];
        for (var i = 0; i < extents.Length; i++)
        {
            var e = proto.Extent[i];
            if (e.HasLengthCase == TensorSliceProto.Types.Extent.HasLengthOneofCase.None)
            {
                if (e.Start != 0)
                    ThrowHelper.Format(CheckpointFormatError.InvalidSlice, path, "slice extent without length has a non-zero start", key, offset: valueOffset);
                extents[i] = TensorSliceExtent.Full;
                continue;
            }
            if (e.Start < 0 || e.Length <= 0 || e.Start > fullShape[i] - e.Length)
                ThrowHelper.Format(CheckpointFormatError.InvalidSlice, path, "slice extent lies outside the tensor", key, offset: valueOffset,
                    comparison: $"dimension {i} of size {fullShape[i]}, extent {e.Start},{e.Length}");
            extents[i] = new TensorSliceExtent(e.Start, e.Length);
        }
        return new TensorSlice(extents);
    }
}

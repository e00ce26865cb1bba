using System.Buffers.Binary;
using System.Security.Cryptography;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Format.Tests;

/// <summary>Every TensorFlow-written checkpoint in the shared corpus: read, verify, reproduce byte for byte.</summary>
public sealed class CorpusTests
{
    public static TheoryData<string> Prefixes() => TfCorpus.PrefixRows();

    private static string Full(string relativePrefix) => Path.Combine(TfCorpus.RequireRoot(), relativePrefix);

    [CorpusTheory]
    [MemberData(nameof(Prefixes))]
    public void Open_EveryCorpusPrefix_EnumeratesEntriesAndEveryTensorMatchesTfChecksum(string relativePrefix)
    {
        using var reader = TensorBundleReader.Open(Full(relativePrefix));
        Assert.NotEmpty(reader.Entries);
        Assert.True(reader.Header.ShardCount >= 1);
        for (var i = 1; i < reader.Entries.Count; i++)
            Assert.True(reader.Entries[i - 1].KeyUtf8.Span.SequenceCompareTo(reader.Entries[i].KeyUtf8.Span) < 0);

        foreach (var entry in reader.Entries)
        {
            Assert.Same(entry, reader.GetEntry(entry.Key));
            if (entry.IsPartitioned) continue;
            if (DTypes.IsFixedSize(entry.DType))
            {
                // Span path, streaming path and native path all verify the CRC TF stored.
                var buffer = new byte[entry.Size];
                reader.ReadTensor(entry, buffer);
                var streamed = new byte[entry.Size];
                reader.ReadTensor(entry, (chunk, off) => chunk.CopyTo(streamed.AsSpan((int)off)), chunkSizeInBytes: 48);
                Assert.Equal(buffer, streamed);
                // Independent check: the stored CRC is TF's masked CRC32C of exactly these bytes.
                Assert.Equal(entry.Crc32C, MaskedCrc32C.Mask(MaskedCrc32C.Compute(buffer)));
            }
            else if (entry.DType == DType.String)
            {
                var strings = reader.ReadStrings(entry);
                Assert.Equal(entry.Shape.ElementCount, strings.LongLength);
            }
            else
            {
                reader.VerifyEntry(entry);
            }
        }
    }

    [CorpusTheory]
    [MemberData(nameof(Prefixes))]
    public void Writer_EveryCorpusPrefix_ReproducesIndexAndDataFilesByteForByte(string relativePrefix)
    {
        var source = Full(relativePrefix);
        using var reader = TensorBundleReader.Open(source);
        using var dir = new TempDir("repro");
        var target = dir.File(Path.GetFileName(source));
        using (var writer = new TensorBundleWriter(target, new TensorBundleWriterOptions
               {
                   ShardCount = reader.Header.ShardCount,
                   Producer = reader.Header.Producer,
                   MinConsumer = reader.Header.MinConsumer,
                   BadConsumers = reader.Header.BadConsumers,
               }))
        {
            // Original data order: per shard by offset (zero-size tensors first at a shared offset).
            foreach (var entry in reader.EntriesInDataOrder)
            {
                if (DTypes.IsFixedSize(entry.DType))
                {
                    var data = new byte[entry.Size];
                    reader.ReadTensor(entry, data);
                    writer.Add(entry.Key, entry.DType, entry.Shape, data, entry.ShardId);
                }
                else if (entry.DType == DType.String)
                {
                    writer.AddStrings(entry.Key, entry.Shape, reader.ReadStrings(entry), entry.ShardId);
                }
                else
                {
                    writer.AddEncoded(entry, (buf, off) => { reader.ReadRawBytes(entry, off, buf); return buf.Length; });
                }
            }
            foreach (var entry in reader.Entries.Where(e => e.IsPartitioned)) writer.AddEncoded(entry, null);
            writer.Finish();
        }

        AssertSameFile(BundleNaming.IndexFile(source), BundleNaming.IndexFile(target));
        for (var shard = 0; shard < reader.Header.ShardCount; shard++)
            AssertSameFile(reader.GetDataFilePath(shard), BundleNaming.DataFile(target, shard, reader.Header.ShardCount));
        Assert.Empty(Directory.GetFiles(dir.Path, "*tempstate*"));
    }

    [CorpusTheory]
    [MemberData(nameof(Prefixes))]
    public void IndexWrite_EveryCorpusPrefix_ReproducesIndexFromEntries(string relativePrefix)
    {
        var source = Full(relativePrefix);
        var (header, entries) = TensorBundleIndex.Read(source);
        using var ms = new MemoryStream();
        TensorBundleIndex.Serialize(ms, header, entries.Reverse());
        Assert.Equal(File.ReadAllBytes(BundleNaming.IndexFile(source)), ms.ToArray());
    }

    private static void AssertSameFile(string expected, string actual)
    {
        var e = File.ReadAllBytes(expected);
        var a = File.ReadAllBytes(actual);
        Assert.True(e.AsSpan().SequenceEqual(a),
            $"{Path.GetFileName(actual)} differs from TF's {Path.GetFileName(expected)}: {a.Length} vs {e.Length} bytes, sha256 {Convert.ToHexString(SHA256.HashData(a))[..12]} vs {Convert.ToHexString(SHA256.HashData(e))[..12]}, first difference at {FirstDifference(e, a)}");
    }

    private static int FirstDifference(byte[] a, byte[] b)
    {
        var n = Math.Min(a.Length, b.Length);
        for (var i = 0; i < n; i++) if (a[i] != b[i]) return i;
        return n;
    }

    [CorpusFact]
    public void ReadTensor_HalfPlusThree_HoldsTfServingValues()
    {
        // TF Serving's saved_model_half_plus_three: y = a*x + b with a = 0.5, b = 3 (c = 3 too).
        using var reader = TensorBundleReader.Open(Path.Combine(TfCorpus.Case("smv1-tf10-half-plus-three"), "variables", "variables"));
        Assert.False(reader.IsObjectBased);
        Assert.Equal(["a", "b", "c"], reader.Entries.Select(e => e.Key));
        float Scalar(string key)
        {
            var e = reader.GetEntry(key);
            Assert.Equal(DType.Float, e.DType);
            Assert.Equal(TensorShape.Scalar, e.Shape);
            Span<byte> b = stackalloc byte[4];
            reader.ReadTensor(e, b);
            return BinaryPrimitives.ReadSingleLittleEndian(b);
        }
        Assert.Equal(0.5f, Scalar("a"));
        Assert.Equal(3.0f, Scalar("b"));
        Assert.Equal(3.0f, Scalar("c"));
    }

    [CorpusFact]
    public void Open_CounterScalar_SingleFloatScalarOfFourBytes()
    {
        using var reader = TensorBundleReader.Open(Path.Combine(TfCorpus.Case("smv1-counter-scalar"), "variables", "variables"));
        var entry = Assert.Single(reader.Entries);
        Assert.Equal("counter", entry.Key);
        Assert.Equal(0, entry.Shape.Rank);
        Assert.Equal(4, entry.Size);
        Assert.Equal(new FileInfo(reader.GetDataFilePath(0)).Length, entry.Offset + entry.Size);
    }

    [CorpusFact]
    public void Open_MyTestModel_HasW21x1Float()
    {
        using var reader = TensorBundleReader.Open(Path.Combine(TfCorpus.Case("v1-my-test-model-tf14"), "my_test_model-1000"));
        var w = reader.GetEntry("W");
        Assert.Equal(DType.Float, w.DType);
        Assert.Equal(new TensorShape(21, 1), w.Shape);
        Assert.Equal("[21, 1]", w.Shape.ToString());
        Assert.Equal(84, w.Size);
    }

    [CorpusFact]
    public void ReadObjectGraph_Keras3Manager_MatchesSpecObservation()
    {
        // Spec §14: ckpt-9 has 23 index entries (header + graph + 21 variables), graph at 17552 size 3168, 32 nodes.
        using var reader = TensorBundleReader.Open(Path.Combine(TfCorpus.Case("obj-keras3-tf219-manager-3ckpts"), "ckpt-9"));
        Assert.Equal(22, reader.Entries.Count);
        Assert.True(reader.IsObjectBased);
        var graphEntry = reader.GetEntry(CheckpointKeys.ObjectGraph);
        Assert.Equal(17552, graphEntry.Offset);
        Assert.Equal(3168, graphEntry.Size);
        var graph = reader.ReadObjectGraph();
        Assert.NotNull(graph);
        Assert.Equal(32, graph.Nodes.Count);
        Assert.Equal(["compensator", "compensator_optimizer", "save_counter"], graph.Nodes[0].Children.Select(c => c.LocalName));
        Assert.True(graph.Nodes[0].HasCheckpointValues);
        var counter = reader.GetEntry("save_counter/.ATTRIBUTES/VARIABLE_VALUE");
        Assert.Equal(DType.Int64, counter.DType);
        Assert.Equal(0, counter.Offset);
    }

    [CorpusFact]
    public void ReadObjectGraph_GraphRoundTripsToIdenticalBytes()
    {
        // Our proto definitions must serialize TF's object graph back to the same bytes (field order, BoolValue, defaults).
        foreach (var (_, prefix) in TfCorpus.AllPrefixes())
        {
            using var reader = TensorBundleReader.Open(prefix);
            if (!reader.TryGetEntry(CheckpointKeys.ObjectGraph, out var e)) continue;
            var raw = reader.ReadStrings(e)[0];
            var graph = Protos.TrackableObjectGraph.Parser.ParseFrom(raw);
            Assert.Equal(raw, Google.Protobuf.MessageExtensions.ToByteArray(graph));
        }
    }

    [CorpusFact]
    public void Open_ShardedCorpusCases_HaveTwoShardsAndEntriesInBoth()
    {
        foreach (var prefix in new[] { "obj-sharded2-rl/ckpt-5", "kw-sharded2-tf21-cp0000/cp-0000.ckpt", "sm-keras-tf20-sharded2/variables/variables" })
        {
            using var reader = TensorBundleReader.Open(Path.Combine(TfCorpus.RequireRoot(), prefix));
            Assert.Equal(2, reader.Header.ShardCount);
            Assert.Contains(reader.Entries, x => x.ShardId == 0);
            Assert.Contains(reader.Entries, x => x.ShardId == 1);
        }
    }
}

using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Format.Protos;
using CheckpointGpu.TestSupport;
using Xunit.Abstractions;

namespace CheckpointGpu.Tests;

/// <summary>
/// What <c>ckpt restore</c> does, built only on the public API: restore into an empty root, then mirror the
/// checkpoint's object graph so that every value arrives by restore-on-create, assert consumption, verify TF's
/// checksums from device memory, and write the tree again.
/// </summary>
public sealed class GenericTreeTests(ITestOutputHelper output) : IClassFixture<CpuFixture>
{
    public static TheoryData<string> ObjectBasedPrefixes()
    {
        var data = new TheoryData<string>();
        if (TfCorpus.Root is null) { _ = TfCorpus.SkipReason; return data; }
        foreach (var (_, prefix) in TfCorpus.AllPrefixes())
        {
            using var reader = TensorBundleReader.Open(prefix);
            if (reader.IsObjectBased) data.Add(Path.GetRelativePath(TfCorpus.RequireRoot(), prefix));
        }
        return data;
    }

    [CorpusTheory]
    [MemberData(nameof(ObjectBasedPrefixes))]
    public void RestoreOnCreate_GenericMirror_Consumed_ValuesMatchTfCrcs_Rewrite(string relativePrefix)
    {
        var tf = Path.Combine(TfCorpus.RequireRoot(), relativePrefix);
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var reader = TensorBundleReader.Open(tf);
        var graph = reader.ReadObjectGraph()!;
        using var mirror = LoadedCheckpoint.Restore(tf, acc, log: null);   // the tree is built after Restore
        Assert.True(mirror.IsObjectBased);
        mirror.Status.AssertConsumed().AssertExistingObjectsMatched();
        foreach (var (key, v) in mirror.Variables)
        {
            // Every value read back from device memory carries the CRC TensorFlow stored.
            Assert.Equal(reader.GetEntry(key).Crc32C, MaskedCrc32C.ComputeMasked(v.ReadBytes()));
            Assert.Equal(key, FindKey(graph, mirror.Saver, v));
        }

        using var dir = new TempDir("mirror");
        var written = mirror.Write(dir.File("copy"));
        var graphSame = TestUtil.ReadTfObjectGraph(tf).AsSpan().SequenceEqual(TestUtil.ReadTfObjectGraph(written));
        var indexSame = File.ReadAllBytes(tf + ".index").AsSpan().SequenceEqual(File.ReadAllBytes(written + ".index"));
        var dataSame = Enumerable.Range(0, reader.Header.ShardCount).All(i =>
            File.ReadAllBytes(BundleNaming.DataFile(tf, i, reader.Header.ShardCount)).AsSpan()
                .SequenceEqual(File.ReadAllBytes(BundleNaming.DataFile(written, i, reader.Header.ShardCount))));
        output.WriteLine($"{relativePrefix}: graph {(graphSame ? "identical" : "DIFFERS")}, index {(indexSame ? "identical" : "DIFFERS")}, data {(dataSame ? "identical" : "DIFFERS")}");
        if (!graphSame)
        {
            var ours = TrackableObjectGraph.Parser.ParseFrom(TestUtil.ReadTfObjectGraph(written));
            for (var i = 0; i < Math.Max(ours.Nodes.Count, graph.Nodes.Count); i++)
                if (i >= ours.Nodes.Count || i >= graph.Nodes.Count || !ours.Nodes[i].Equals(graph.Nodes[i]))
                {
                    output.WriteLine($"first differing node {i}: TF {(i < graph.Nodes.Count ? graph.Nodes[i] : null)} ours {(i < ours.Nodes.Count ? ours.Nodes[i] : null)}");
                    break;
                }
        }
        Assert.True(graphSame, "object graph bytes differ from TensorFlow's");
        Assert.True(indexSame, ".index differs from TensorFlow's");
        Assert.True(dataSame, "a data file differs from TensorFlow's");
    }

    [CorpusTheory]
    [InlineData("smv1-tf10-half-plus-three/variables/variables")]
    [InlineData("v1-saver-adam-tf110-houseprices/model.ckpt")]
    [InlineData("v1-tflearn-tf212-compat/model.tflearn")]
    public void RestoreOnCreate_NameBasedMirror_ConsumedAndValuesMatchTfCrcs(string relativePrefix)
    {
        var tf = Path.Combine(TfCorpus.RequireRoot(), relativePrefix);
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var reader = TensorBundleReader.Open(tf);
        using var mirror = LoadedCheckpoint.Restore(tf, acc, log: null);
        Assert.False(mirror.IsObjectBased);
        mirror.Status.AssertConsumed();
        Assert.Equal(reader.Entries.Count(e => e.Key.Length > 0), mirror.Variables.Count + mirror.HostValueCount);
        foreach (var (key, v) in mirror.Variables)
            Assert.Equal(reader.GetEntry(key).Crc32C, MaskedCrc32C.ComputeMasked(v.ReadBytes()));
    }

    private static string FindKey(TrackableObjectGraph graph, TrackableSaver saver, Variable v)
    {
        var objects = saver.View.ListObjects();
        for (var i = 0; i < objects.Count; i++)
            if (ReferenceEquals(objects[i], v)) return graph.Nodes[i].Attributes[0].CheckpointKey;
        throw new InvalidOperationException($"{v} is not reachable.");
    }
}

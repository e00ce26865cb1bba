using CheckpointGpu.Format;

namespace CheckpointGpu.Data.Tests;

public sealed class DatasetIteratorTests
{
    [Fact]
    public void Batches_AreTheFileBytesAtTheirSequences_EachEpochAShuffledPermutationWithoutRepeats()
    {
        using var ds = TestData.OpenSmall();
        var it = TestData.NewIterator(ds);
        var perEpoch = it.BatchesPerEpoch;
        Assert.True(perEpoch >= 20, $"{perEpoch} batches per epoch");
        var seq = new byte[ds.SequenceLength];
        var orders = new List<long[]>();
        for (var e = 0; e < 3; e++)
        {
            var ids = new List<long>();
            for (var i = 0; i < perEpoch; i++)
            {
                var b = it.GetNext();
                Assert.Equal(e, b.Epoch);
                Assert.Equal(e * perEpoch + i, b.Index);
                for (var k = 0; k < b.SequenceIds.Count; k++)
                {
                    // Independent of the dataset's reader: the bytes straight from the file at the located offset.
                    var (path, offset) = ds.Locate(b.SequenceIds[k]);
                    using var fs = File.OpenRead(path);
                    fs.Position = offset;
                    fs.ReadExactly(seq);
                    Assert.Equal(seq, b.Data.AsSpan(k * ds.SequenceLength, ds.SequenceLength).ToArray());
                }
                ids.AddRange(b.SequenceIds);
            }
            Assert.Equal(ids.Count, ids.Distinct().Count());
            Assert.Equal(perEpoch * TestData.BatchSize, ids.Count);
            orders.Add([.. ids]);
        }
        // Shuffled: neither sorted nor the same order in two epochs.
        Assert.NotEqual(orders[0].Order(), orders[0]);
        Assert.NotEqual(orders[0], orders[1]);
        Assert.Equal(3, it.GetNext().Epoch);
    }

    [Fact]
    public void SameSeed_SameBatches_OtherSeed_OtherBatches()
    {
        using var ds = TestData.OpenSmall();
        var a = TestData.NewIterator(ds);
        var b = TestData.NewIterator(ds);
        var c = new DatasetIterator(ds, TestData.BatchSize, TestData.ShuffleBuffer, TestData.Seed + 1);
        for (var i = 0; i < 5; i++)
        {
            var x = a.GetNext();
            Assert.Equal(x.SequenceIds, b.GetNext().SequenceIds);
            Assert.NotEqual(x.SequenceIds, c.GetNext().SequenceIds);
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(37)]
    [InlineData(100)]
    public void WriteRead_InProcess_ContinuesWithTheUninterruptedBatches(int stopAt)
    {
        using var dir = new TempDir("inproc");
        using var ds = TestData.OpenSmall();
        var reference = TestData.NewIterator(ds);
        var expected = Enumerable.Range(0, stopAt + 30).Select(_ => TestData.Line(reference.GetNext())).ToArray();

        var first = TestData.NewIterator(ds);
        for (var i = 0; i < stopAt; i++) first.GetNext();
        using (var ckpt = new Checkpoint(("iterator", first)) { Log = null }) ckpt.Write(dir.File("it"));
        first.GetNext(); // moving on after the save must not leak into the checkpoint

        var resumed = TestData.NewIterator(ds);
        using (var ckpt = new Checkpoint(("iterator", resumed)) { Log = null }) ckpt.Read(dir.File("it")).AssertConsumed();
        Assert.Equal(stopAt, resumed.BatchesProduced);
        for (var i = stopAt; i < expected.Length; i++) Assert.Equal(expected[i], TestData.Line(resumed.GetNext()));
    }

    [Fact]
    public void Checkpoint_StoresTheStateUnderTensorFlowsIteratorKey()
    {
        using var dir = new TempDir("key");
        using var ds = TestData.OpenSmall();
        var it = TestData.NewIterator(ds);
        it.GetNext();
        using (var ckpt = new Checkpoint(("iterator", it)) { Log = null }) ckpt.Write(dir.File("it"));
        using var reader = TensorBundleReader.Open(dir.File("it"));
        Assert.True(reader.TryGetEntry("iterator/.ATTRIBUTES/ITERATOR_STATE", out var entry));
        Assert.Equal(DType.String, entry!.DType);
        Assert.Equal(0, entry.Shape.Rank);
    }

    [Fact]
    public void Restore_OntoAnotherDataset_DatasetExceptionNamingTheFingerprints()
    {
        using var dir = new TempDir("other");
        using var ds = TestData.OpenSmall();
        var it = TestData.NewIterator(ds);
        it.GetNext();
        using (var ckpt = new Checkpoint(("iterator", it)) { Log = null }) ckpt.Write(dir.File("it"));
        using var other = SequenceDataset.Open(TestData.SmallXmlFiles.Take(7).ToArray(), TestData.SequenceLength, new SequenceDatasetOptions { ShardSizeInBytes = TestData.ShardSize });
        var wrong = TestData.NewIterator(other);
        using var restore = new Checkpoint(("iterator", wrong)) { Log = null };
        var ex = Assert.ThrowsAny<Exception>(() => restore.Read(dir.File("it")));
        var dex = ex as DatasetException ?? ex.InnerException as DatasetException;
        Assert.NotNull(dex);
        Assert.Contains("another dataset", dex!.Message, StringComparison.Ordinal);
        Assert.Equal(0, wrong.BatchesProduced);
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("{\"version\":2}")]
    [InlineData("null")]
    public void Deserialize_MalformedState_DatasetException(string json)
    {
        using var ds = TestData.OpenSmall();
        var it = TestData.NewIterator(ds);
        Assert.Throws<DatasetException>(() => it.Deserialize(HostTensor.FromString(json)));
    }

    [Fact]
    public void Deserialize_BufferIdsOutOfRangeOrRepeated_DatasetException_StateUnchanged()
    {
        using var ds = TestData.OpenSmall();
        var it = TestData.NewIterator(ds);
        it.GetNext();
        var good = it.Serialize().Strings[0];
        var text = System.Text.Encoding.UTF8.GetString(good);
        var bufferStart = text.IndexOf("\"buffer\":[", StringComparison.Ordinal) + "\"buffer\":[".Length;
        var bad1 = text[..bufferStart] + "99999999," + text[bufferStart..];
        var firstId = text[bufferStart..].Split(',', ']')[0];
        var bad2 = text[..bufferStart] + firstId + "," + text[bufferStart..];
        Assert.Throws<DatasetException>(() => it.Deserialize(HostTensor.FromString(bad1)));
        Assert.Throws<DatasetException>(() => it.Deserialize(HostTensor.FromString(bad2)));
        Assert.Equal(good, it.Serialize().Strings[0]);
    }
}

namespace CheckpointGpu.Data.Tests;

public sealed class SequenceDatasetTests
{
    [Fact]
    public void Open_MissingFile_FileNotFoundNamingIt()
    {
        using var dir = new TempDir("missing");
        var path = dir.File("nope.bin");
        var ex = Assert.Throws<FileNotFoundException>(() => SequenceDataset.Open([path], 8));
        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_EmptyFile_DatasetExceptionNamingIt()
    {
        using var dir = new TempDir("empty");
        var path = dir.File("empty.txt");
        File.WriteAllBytes(path, []);
        var ex = Assert.Throws<DatasetException>(() => SequenceDataset.Open([path], 8));
        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
        Assert.Contains("empty", ex.Message, StringComparison.Ordinal);
        Assert.Equal(path, ex.FilePath);
    }

    [Fact]
    public void Open_SequenceLongerThanData_DatasetExceptionNamingFileAndSize()
    {
        using var dir = new TempDir("short");
        var path = dir.File("short.txt");
        File.WriteAllBytes(path, new byte[100]);
        var ex = Assert.Throws<DatasetException>(() => SequenceDataset.Open([path], 101));
        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
        Assert.Contains("100 bytes", ex.Message, StringComparison.Ordinal);
        Assert.Contains("101", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Iterator_FewerSequencesThanOneBatch_DatasetException()
    {
        using var dir = new TempDir("tiny");
        var path = dir.File("tiny.txt");
        File.WriteAllBytes(path, new byte[30]);
        using var dataset = SequenceDataset.Open([path], 10); // 3 sequences
        var ex = Assert.Throws<DatasetException>(() => new DatasetIterator(dataset, 4, 1, 1));
        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Shards_CountAndOffsets_FollowTheFileLayout()
    {
        using var dir = new TempDir("layout");
        var a = dir.File("a.bin");
        var b = dir.File("b.bin");
        File.WriteAllBytes(a, Enumerable.Range(0, 250).Select(i => (byte)i).ToArray());
        File.WriteAllBytes(b, Enumerable.Range(0, 95).Select(i => (byte)(255 - i)).ToArray());
        // Shards of 100 bytes: a → 100, 100, 50; b → 95. Sequences of 30 with stride 30: 3, 3, 1, 3.
        using var ds = SequenceDataset.Open([a, b], 30, new SequenceDatasetOptions { ShardSizeInBytes = 100 });
        Assert.Equal(4, ds.ShardCount);
        Assert.Equal([3L, 3, 1, 3], Enumerable.Range(0, 4).Select(ds.ShardSequenceCount));
        Assert.Equal(10, ds.SequenceCount);
        Assert.Equal((Path.GetFullPath(a), 100 + 60L), ds.Locate(5));
        Assert.Equal((Path.GetFullPath(b), 30L), ds.Locate(8));
        var buffer = new byte[30];
        ds.ReadSequence(6, buffer);
        Assert.Equal(Enumerable.Range(200, 30).Select(i => (byte)i), buffer);
        ds.ReadSequence(9, buffer);
        Assert.Equal(Enumerable.Range(60, 30).Select(i => (byte)(255 - i)), buffer);
    }

    [Fact]
    public void SdkReferenceDocs_FindsMegabytesOfXmlText()
    {
        var files = SdkReferenceDocs.FindXmlFiles();
        Assert.True(files.Count > 10, $"only {files.Count} files");
        Assert.All(files, f => Assert.EndsWith(".xml", f, StringComparison.Ordinal));
        Assert.True(files.Sum(f => new FileInfo(f).Length) > 5_000_000);
        var head = File.ReadAllText(files[0])[..200];
        Assert.Contains("<?xml", head, StringComparison.Ordinal);
    }

    [Fact]
    public void SdkReferenceDocs_NoPacksUnderRoot_FileNotFoundNamingPattern()
    {
        using var dir = new TempDir("noroot");
        var ex = Assert.Throws<FileNotFoundException>(() => SdkReferenceDocs.FindXmlFiles(dir.Path));
        Assert.Contains(dir.Path, ex.Message, StringComparison.Ordinal);
        Assert.Contains("Microsoft.NETCore.App.Ref", ex.Message, StringComparison.Ordinal);
    }
}

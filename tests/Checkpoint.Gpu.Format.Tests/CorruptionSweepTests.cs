using System.Diagnostics;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Format.Tests;

/// <summary>
/// Truncate and flip bytes of real TF files: every case must end in success or a typed error
/// (<see cref="CheckpointFormatException"/>, or <see cref="FileNotFoundException"/>), never
/// IndexOutOfRange/Overflow/OutOfMemory/InvalidProtocolBuffer or a hang.
/// </summary>
[Trait("Category", "Corruption")]
public sealed class CorruptionSweepTests
{
    public static TheoryData<string> Cases() => new()
    {
        "smv1-tf10-half-plus-three/variables/variables",
        "sm-keras212-objgraph-only/variables/variables",
        "kw-subclassed-actor-critic/my_checkpoint",
        "kw-sharded2-tf21-cp0000/cp-0000.ckpt",
        "obj-keras3-tf219-manager-3ckpts/ckpt-9",
        "sm-keras-tf25dev-stringlookup-small-vocab/variables/variables",
    };

    private static readonly TimeSpan s_budget = TimeSpan.FromSeconds(60);

    /// <summary>Opens and fully reads a bundle; returns how it ended.</summary>
    private static string Exercise(string prefix)
    {
        try
        {
            using var r = TensorBundleReader.Open(prefix);
            foreach (var e in r.Entries)
            {
                if (e.IsPartitioned) continue;
                if (e.DType == DType.String) _ = r.ReadStrings(e);
                else if (DTypes.IsFixedSize(e.DType)) r.ReadTensor(e, (_, _) => { }, 64);
                else r.VerifyEntry(e);
            }
            _ = r.ReadObjectGraph();
            return "ok";
        }
        catch (CheckpointFormatException ex)
        {
            Assert.False(string.IsNullOrEmpty(ex.FilePath));
            Assert.True(Enum.IsDefined(ex.Error));
            return ex.Error.ToString();
        }
        catch (FileNotFoundException ex)
        {
            Assert.False(string.IsNullOrEmpty(ex.FileName));
            return "FileNotFound";
        }
    }

    private static (TempDir Dir, string Prefix, string[] DataFiles) CopyCase(string relativePrefix)
    {
        var source = Path.Combine(TfCorpus.RequireRoot(), relativePrefix);
        var (header, _) = TensorBundleIndex.Read(source);
        var dir = new TempDir("sweep");
        var prefix = dir.File(Path.GetFileName(source));
        File.Copy(source + ".index", prefix + ".index");
        var data = new string[header.ShardCount];
        for (var i = 0; i < header.ShardCount; i++)
        {
            data[i] = BundleNaming.DataFile(prefix, i, header.ShardCount);
            File.Copy(BundleNaming.DataFile(source, i, header.ShardCount), data[i]);
        }
        return (dir, prefix, data);
    }

    [CorpusTheory]
    [MemberData(nameof(Cases))]
    public void Index_TruncatedAtEveryLengthAndEveryByteFlipped_EndsInSuccessOrTypedError(string relativePrefix)
    {
        var (dir, prefix, _) = CopyCase(relativePrefix);
        using var _d = dir;
        var indexPath = prefix + ".index";
        var original = File.ReadAllBytes(indexPath);
        Assert.Equal("ok", Exercise(prefix));
        var sw = Stopwatch.StartNew();
        var outcomes = new Dictionary<string, int>();
        var footerStart = original.Length - 48;
        string Run(byte[] bytes)
        {
            File.WriteAllBytes(indexPath, bytes);
            var o = Exercise(prefix);
            outcomes[o] = outcomes.GetValueOrDefault(o) + 1;
            return o;
        }
        for (var len = 0; len < original.Length; len++) Assert.NotEqual("ok", Run(original.AsSpan(0, len).ToArray()));
        foreach (var mask in new byte[] { 0x01, 0x80, 0xFF })
        {
            for (var i = 0; i < original.Length; i++)
            {
                var m = (byte[])original.Clone();
                m[i] ^= mask;
                var o = Run(m);
                // Every block is CRC-protected: only footer bytes (padding, or a metaindex handle TF never reads) may go unnoticed.
                Assert.True(o != "ok" || i >= footerStart, $"flip 0x{mask:X2} at {i} went unnoticed");
            }
        }
        Assert.True(sw.Elapsed < s_budget, $"sweep took {sw.Elapsed}");
        Assert.True(outcomes.GetValueOrDefault("ok") <= 3 * 48, string.Join(", ", outcomes.Select(kv => $"{kv.Key}={kv.Value}")));
    }

    [CorpusTheory]
    [MemberData(nameof(Cases))]
    public void Index_BlockContentsMutatedWithRepairedCrc_EndsInSuccessOrTypedError(string relativePrefix)
    {
        // Repairing the block CRC after each flip lets the mutation reach the block, entry and proto parsers.
        var (dir, prefix, _) = CopyCase(relativePrefix);
        using var _d = dir;
        var indexPath = prefix + ".index";
        var original = File.ReadAllBytes(indexPath);
        var (meta, index) = RawIndex.Handles(original);
        var blocks = new List<(int Offset, int Size)> { (index.Offset, index.Size) };
        if (meta.Offset - 5 > 0) blocks.Add((0, meta.Offset - 5)); // single data block files only; others still get the index block
        var sw = Stopwatch.StartNew();
        var rng = new Random(42);
        foreach (var (offset, size) in blocks)
        {
            for (var i = offset; i < offset + size; i++)
            {
                foreach (var mask in new[] { (byte)0x01, (byte)(1 << rng.Next(1, 8)), (byte)0xFF })
                {
                    var m = (byte[])original.Clone();
                    m[i] ^= mask;
                    RawIndex.FixBlockCrc(m, offset, size);
                    File.WriteAllBytes(indexPath, m);
                    _ = Exercise(prefix);
                }
            }
        }
        Assert.True(sw.Elapsed < s_budget, $"sweep took {sw.Elapsed}");
    }

    [CorpusTheory]
    [MemberData(nameof(Cases))]
    public void Data_SampledFlipsAndTruncations_EndInSuccessOrTypedError(string relativePrefix)
    {
        var (dir, prefix, dataFiles) = CopyCase(relativePrefix);
        using var _d = dir;
        var rng = new Random(7);
        var sw = Stopwatch.StartNew();
        foreach (var dataPath in dataFiles)
        {
            var original = File.ReadAllBytes(dataPath);
            var positions = original.Length <= 512 ? Enumerable.Range(0, original.Length) : Enumerable.Range(0, 300).Select(_ => rng.Next(original.Length));
            foreach (var p in positions)
            {
                var m = (byte[])original.Clone();
                m[p] ^= (byte)(1 << rng.Next(8));
                File.WriteAllBytes(dataPath, m);
                // Every payload byte is covered by a CRC, so a flip must be reported.
                Assert.NotEqual("ok", Exercise(prefix));
            }
            var lengths = original.Length <= 512 ? Enumerable.Range(0, original.Length) : Enumerable.Range(0, 100).Select(_ => rng.Next(original.Length));
            foreach (var len in lengths)
            {
                File.WriteAllBytes(dataPath, original.AsSpan(0, len).ToArray());
                Assert.NotEqual("ok", Exercise(prefix));
            }
            File.WriteAllBytes(dataPath, original);
            File.Delete(dataPath);
            Assert.Equal("FileNotFound", Exercise(prefix));
            File.WriteAllBytes(dataPath, original);
        }
        Assert.True(sw.Elapsed < s_budget, $"sweep took {sw.Elapsed}");
    }

    [Fact]
    public void Fuzz_RandomMutationsOfWrittenBundle_EndInSuccessOrTypedError()
    {
        // Seeded in-process mutation fuzzer over a bundle with every payload kind, time-boxed.
        using var dir = new TempDir("fuzz");
        var prefix = dir.File("f");
        using (var w = new TensorBundleWriter(prefix, new TensorBundleWriterOptions { ShardCount = 2 }))
        {
            w.Add("a/float", DType.Float, new TensorShape(3, 5), new byte[60]);
            w.AddStrings("b/strings", new TensorShape(4), [[], [1, 2, 3], new byte[200], [0xFF]], shardId: 1);
            w.Add("c/int64", DType.Int64, TensorShape.Scalar, new byte[8]);
            w.AddSlice("d/sliced", new TensorShape(4, 2), new TensorSlice(new TensorSliceExtent(0, 2), TensorSliceExtent.Full), DType.Int8, new byte[4]);
            w.Finish();
        }
        var index = File.ReadAllBytes(prefix + ".index");
        var (meta, _) = RawIndex.Handles(index);
        var rng = new Random(20240601);
        var sw = Stopwatch.StartNew();
        var runs = 0;
        while (sw.Elapsed < TimeSpan.FromSeconds(5))
        {
            var m = (byte[])index.Clone();
            var flips = rng.Next(1, 4);
            for (var k = 0; k < flips; k++) m[rng.Next(meta.Offset - 5)] = (byte)rng.Next(256);
            RawIndex.FixBlockCrc(m, 0, meta.Offset - 5);
            File.WriteAllBytes(prefix + ".index", m);
            _ = Exercise(prefix);
            runs++;
        }
        Assert.True(runs > 100);
    }
}

using System.Diagnostics;
using System.Runtime.InteropServices;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Tests;

/// <summary>Change tracking on <see cref="Variable"/> and incremental, hard-linked saves of <see cref="CheckpointManager"/> (issue 14).</summary>
public sealed class IncrementalSaveTests : IClassFixture<CpuFixture>
{
    private const int FrozenElements = 4099;
    private readonly Accelerator _cpu;

    public IncrementalSaveTests(CpuFixture fixture) { _cpu = fixture.Accelerator; }

    /// <summary>A frozen "backbone" and a trained "adapter".</summary>
    private sealed class Model : AutoTrackable
    {
        public Variable Frozen { get; }
        public Variable Adapter { get; }

        public Model(Accelerator acc)
        {
            Frozen = AddVariable("frozen", acc, DType.Float, new TensorShape(FrozenElements));
            Adapter = AddVariable("adapter", acc, DType.Float, new TensorShape(17));
        }
    }

    private static float[] Values(int n, float seed) => Enumerable.Range(0, n).Select(i => seed + i * 0.25f).ToArray();

    private (Checkpoint Ckpt, Model Model) NewModel(float frozenSeed = 1f)
    {
        var model = new Model(_cpu);
        model.Frozen.Assign<float>(Values(FrozenElements, frozenSeed));
        model.Adapter.Assign<float>(Values(17, 0f));
        return (new Checkpoint(("model", model)) { Log = null }, model);
    }

    private static void Step(Model model, int step) => model.Adapter.Assign<float>(Values(17, step * 100f));

    /// <summary>Reads back every payload with CRC checks (what <c>ckpt verify</c> does).</summary>
    private static void VerifyAll(string prefix)
    {
        using var reader = TensorBundleReader.Open(prefix);
        foreach (var e in reader.EntriesInDataOrder) reader.ReadEncodedPayload(e, (_, _) => { });
    }

    private (float[] Frozen, float[] Adapter) RestoreValues(string prefix)
    {
        var (ckpt, model) = NewModel(frozenSeed: -7f);
        using (ckpt)
        {
            ckpt.Restore(prefix).AssertConsumed();
            var result = (model.Frozen.Read<float>(), model.Adapter.Read<float>());
            model.Frozen.Dispose();
            model.Adapter.Dispose();
            return result;
        }
    }

    private static long LinkCount(string path)
    {
        var psi = new ProcessStartInfo("stat", ["-c", "%h", path]) { RedirectStandardOutput = true };
        using var p = Process.Start(psi)!;
        var text = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return long.Parse(text.Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public void ModificationVersion_EveryTrackedWriteMovesIt_ReadsDoNot()
    {
        using var v = Variable.Create(_cpu, "v", DType.Float, new TensorShape(5));
        var seen = new List<long> { v.ModificationVersion };
        v.Assign<float>([1, 2, 3, 4, 5]);
        seen.Add(v.ModificationVersion);
        v.AssignBytes(new byte[20]);
        seen.Add(v.ModificationVersion);
        v.MarkModified();
        seen.Add(v.ModificationVersion);
        Assert.Equal(seen.Count, seen.Distinct().Count());
        Assert.True(seen.SequenceEqual(seen.Order()), "versions only grow");
        var before = v.ModificationVersion;
        _ = v.Read<float>();
        _ = v.ComputeContentHash();
        Assert.Equal(before, v.ModificationVersion);
        using var other = Variable.Create(_cpu, "w", DType.Float, new TensorShape(5));
        Assert.NotEqual(before, other.ModificationVersion);
    }

    [Fact]
    public void ComputeContentHash_IsXxHash3OfTheDeviceBytes()
    {
        using var v = Variable.Create(_cpu, "v", DType.Float, new TensorShape(1025));
        v.Assign<float>(Values(1025, 3f));
        var expected = System.IO.Hashing.XxHash3.HashToUInt64(MemoryMarshal.AsBytes(Values(1025, 3f).AsSpan()));
        Assert.Equal(expected, v.ComputeContentHash());
    }

    [Fact]
    public void IncrementalSave_UnchangedShardIsHardLinked_AndRestoresLikeAFullSave()
    {
        using var dir = new TempDir("incr");
        var (ckpt, model) = NewModel();
        using (ckpt)
        {
            var manager = new CheckpointManager(ckpt, dir.File("incr"), maxToKeep: null) { IncrementalSaves = new IncrementalSaveOptions() };
            var reports = new List<IncrementalSaveReport>();
            for (var step = 1; step <= 3; step++)
            {
                Step(model, step);
                manager.Save();
                reports.Add(manager.LastIncrementalSave!);
            }
            Assert.Equal(0, reports[0].ShardsLinked);              // no history yet
            Assert.Equal(0, reports[1].ShardsLinked);              // frozen moves from the volatile file to a stable one
            Assert.Equal(2, reports[1].ShardsWritten);
            Assert.Equal(1, reports[2].ShardsLinked);              // ...which the third save links
            Assert.Equal(1, reports[2].ShardsWritten);
            Assert.Equal(FrozenElements * 4L, reports[2].BytesReused);
            Assert.True(reports[2].BytesWritten < 1024, $"only the adapter, the counter and the graph are written, got {reports[2].BytesWritten} bytes");

            var third = manager.LatestCheckpoint!;
            using (var reader = TensorBundleReader.Open(third))
            {
                var frozen = reader.GetEntry("model/frozen/.ATTRIBUTES/VARIABLE_VALUE");
                var linkedFile = BundleNaming.DataFile(third, frozen.ShardId, reader.Header.ShardCount);
                if (!OperatingSystem.IsWindows()) Assert.Equal(2, LinkCount(linkedFile));   // ckpt-2's stable file and ckpt-3's
            }

            // The same state saved in full holds the same entries.
            var full = ckpt.Write(dir.File("full/ckpt"));
            using (var a = TensorBundleReader.Open(third))
            using (var b = TensorBundleReader.Open(full))
            {
                Assert.Equal(b.Entries.Select(e => e.Key).Order(StringComparer.Ordinal), a.Entries.Select(e => e.Key).Order(StringComparer.Ordinal));
                foreach (var e in b.EntriesInDataOrder.Where(e => e.Key != CheckpointKeys.ObjectGraph))
                {
                    var other = a.GetEntry(e.Key);
                    Assert.Equal((e.DType, e.Shape, e.Size, e.Crc32C), (other.DType, other.Shape, other.Size, other.Crc32C));
                }
            }
            VerifyAll(third);
            var (f, ad) = RestoreValues(third);
            Assert.Equal(Values(FrozenElements, 1f), f);
            Assert.Equal(Values(17, 300f), ad);
            Assert.Equal(RestoreValues(full), (f, ad), new ValuesComparer());
            model.Frozen.Dispose();
            model.Adapter.Dispose();
        }
    }

    private sealed class ValuesComparer : IEqualityComparer<(float[], float[])>
    {
        public bool Equals((float[], float[]) x, (float[], float[]) y) => x.Item1.SequenceEqual(y.Item1) && x.Item2.SequenceEqual(y.Item2);
        public int GetHashCode((float[], float[]) obj) => 0;
    }

    public static TheoryData<string> TrackedWritePaths => ["Assign", "AssignBytes", "MarkModified", "Restore", "RestoreAsync"];

    /// <summary>The frozen tensor sits in a linkable file; a write through each tracked path must make the next save rewrite it.</summary>
    [Theory]
    [MemberData(nameof(TrackedWritePaths))]
    public async Task IncrementalSave_WriteThroughTrackedPath_IsNeverSkipped(string path)
    {
        using var dir = new TempDir("incr-path");
        var (ckpt, model) = NewModel();
        using (ckpt)
        {
            // A checkpoint holding other frozen values, for the restore paths.
            var (otherCkpt, otherModel) = NewModel(frozenSeed: 42f);
            string otherPrefix;
            using (otherCkpt) otherPrefix = otherCkpt.Write(dir.File("other/ckpt"));
            otherModel.Frozen.Dispose();
            otherModel.Adapter.Dispose();

            var manager = new CheckpointManager(ckpt, dir.File("incr"), maxToKeep: null) { IncrementalSaves = new IncrementalSaveOptions() };
            // Explicit numbers: the restore paths also restore the save counter.
            Step(model, 1);
            manager.Save(checkpointNumber: 1);
            Step(model, 2);
            manager.Save(checkpointNumber: 2);   // frozen now in a stable file

            var expected = Values(FrozenElements, 42f);
            switch (path)
            {
                case "Assign": model.Frozen.Assign<float>(expected); break;
                case "AssignBytes": model.Frozen.AssignBytes(MemoryMarshal.AsBytes(expected.AsSpan())); break;
                case "MarkModified":
                    WriteDirectly(model.Frozen, expected);
                    model.Frozen.MarkModified();
                    break;
                case "Restore": ckpt.Restore(otherPrefix).AssertNontrivialMatch(); break;
                case "RestoreAsync": (await ckpt.RestoreAsync(otherPrefix)).AssertNontrivialMatch(); break;
                default: throw new ArgumentOutOfRangeException(nameof(path));
            }
            Step(model, 3);
            manager.Save(checkpointNumber: 3);
            var report = manager.LastIncrementalSave!;
            Assert.Equal(0, report.ShardsLinked);
            Assert.True(report.BytesWritten >= FrozenElements * 4L);
            VerifyAll(manager.LatestCheckpoint!);
            Assert.Equal(expected, RestoreValues(manager.LatestCheckpoint!).Frozen);
            model.Frozen.Dispose();
            model.Adapter.Dispose();
        }
    }

    private void WriteDirectly(Variable variable, float[] values)
    {
        // The caller's own device write (bring-your-own kernel or copy): invisible to the library.
        var stream = _cpu.DefaultStream;
        stream.EnqueueCopyFromHost(MemoryMarshal.AsBytes(values.AsSpan()).ToArray(), variable.Buffer.AsView());
        stream.Synchronize();
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void IncrementalSave_UntrackedDirectWrite_CaughtOnlyWithHashing(bool hashing)
    {
        using var dir = new TempDir("incr-hash");
        var (ckpt, model) = NewModel();
        using (ckpt)
        {
            model.Frozen.ContentHashing = hashing;
            var manager = new CheckpointManager(ckpt, dir.File("incr"), maxToKeep: null) { IncrementalSaves = new IncrementalSaveOptions() };
            Step(model, 1);
            manager.Save();
            Step(model, 2);
            manager.Save();
            var written = Values(FrozenElements, 9f);
            WriteDirectly(model.Frozen, written);   // no MarkModified: breaks the contract on purpose
            Step(model, 3);
            manager.Save();
            var restored = RestoreValues(manager.LatestCheckpoint!).Frozen;
            if (hashing)
            {
                Assert.Equal(0, manager.LastIncrementalSave!.ShardsLinked);
                Assert.Equal(written, restored);
            }
            else
            {
                // Documented miss (Variable change-tracking remarks): the stale bytes of the previous checkpoint are kept.
                Assert.Equal(1, manager.LastIncrementalSave!.ShardsLinked);
                Assert.Equal(Values(FrozenElements, 1f), restored);
            }
            model.Frozen.Dispose();
            model.Adapter.Dispose();
        }
    }

    [Fact]
    public void IncrementalSave_HashAllVariables_CatchesUntrackedWrite()
    {
        using var dir = new TempDir("incr-hashall");
        var (ckpt, model) = NewModel();
        using (ckpt)
        {
            var manager = new CheckpointManager(ckpt, dir.File("incr"), maxToKeep: null)
            { IncrementalSaves = new IncrementalSaveOptions { HashAllVariables = true } };
            manager.Save();
            manager.Save();
            manager.Save();
            Assert.Equal(1, manager.LastIncrementalSave!.ShardsLinked);   // unchanged content: still linked
            WriteDirectly(model.Frozen, Values(FrozenElements, 5f));
            manager.Save();
            Assert.Equal(0, manager.LastIncrementalSave!.ShardsLinked);
            Assert.Equal(Values(FrozenElements, 5f), RestoreValues(manager.LatestCheckpoint!).Frozen);
            model.Frozen.Dispose();
            model.Adapter.Dispose();
        }
    }

    [Fact]
    public void IncrementalSave_PruneThenVerify_EveryRemainingCheckpointIsIntact()
    {
        using var dir = new TempDir("incr-prune");
        var (ckpt, model) = NewModel();
        using (ckpt)
        {
            var manager = new CheckpointManager(ckpt, dir.File("incr"), maxToKeep: 2) { IncrementalSaves = new IncrementalSaveOptions() };
            var linked = 0;
            for (var step = 1; step <= 6; step++)
            {
                Step(model, step);
                manager.Save();
                linked += manager.LastIncrementalSave!.ShardsLinked;
                Assert.Equal(Math.Min(step, 2), manager.Checkpoints.Count);
                foreach (var remaining in manager.Checkpoints) VerifyAll(remaining);
            }
            Assert.Equal(4, linked);   // saves 3..6 each link the stable file of the save before (which is pruned next)
            foreach (var remaining in manager.Checkpoints)
            {
                var (f, _) = RestoreValues(remaining);
                Assert.Equal(Values(FrozenElements, 1f), f);
            }
            Assert.Empty(Directory.GetDirectories(dir.File("incr")));   // no _temp part directory left
            model.Frozen.Dispose();
            model.Adapter.Dispose();
        }
    }

    [Fact]
    public void IncrementalSave_PreviousCheckpointDeletedFromOutside_WritesEverythingAgain()
    {
        using var dir = new TempDir("incr-gone");
        var (ckpt, model) = NewModel();
        using (ckpt)
        {
            var manager = new CheckpointManager(ckpt, dir.File("incr"), maxToKeep: null) { IncrementalSaves = new IncrementalSaveOptions() };
            Step(model, 1);
            manager.Save();
            Step(model, 2);
            var previous = manager.Save()!;
            foreach (var f in Directory.GetFiles(dir.File("incr"), Path.GetFileName(previous) + ".*")) File.Delete(f);
            Step(model, 3);
            manager.Save();
            Assert.Equal(0, manager.LastIncrementalSave!.ShardsLinked);
            Assert.True(manager.LastIncrementalSave.BytesWritten >= FrozenElements * 4L);
            VerifyAll(manager.LatestCheckpoint!);
            Assert.Equal(Values(FrozenElements, 1f), RestoreValues(manager.LatestCheckpoint!).Frozen);
            model.Frozen.Dispose();
            model.Adapter.Dispose();
        }
    }

    [Fact]
    public void IncrementalSave_WithoutHardLinks_CopiesAndSaysSoOnce()
    {
        using var dir = new TempDir("incr-copy");
        var (ckpt, model) = NewModel();
        using (ckpt)
        {
            var log = new StringWriter();
            var manager = new CheckpointManager(ckpt, dir.File("incr"), maxToKeep: null)
            { IncrementalSaves = new IncrementalSaveOptions { Log = log, DisableHardLinks = true } };
            for (var step = 1; step <= 4; step++)
            {
                Step(model, step);
                manager.Save();
            }
            Assert.Equal(1, manager.LastIncrementalSave!.ShardsCopied);
            Assert.Equal(0, manager.LastIncrementalSave!.ShardsLinked);
            Assert.Single(log.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.Contains("copying", log.ToString(), StringComparison.Ordinal);
            VerifyAll(manager.LatestCheckpoint!);
            Assert.Equal(Values(FrozenElements, 1f), RestoreValues(manager.LatestCheckpoint!).Frozen);
            model.Frozen.Dispose();
            model.Adapter.Dispose();
        }
    }
}

using CheckpointGpu.Cli.Commands;
using CheckpointGpu.Format;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Cli.Tests;

/// <summary>
/// <c>ckpt convert</c> publishes through the one commit protocol: each step fails in turn through the storage seam, and
/// the source checkpoint and a previous conversion stay intact with no temporary left.
/// </summary>
public sealed class ConvertCommitFaultTests
{
    public static TheoryData<string> Steps()
    {
        var data = new TheoryData<string>();
        foreach (var s in CommitFaults.BundleSteps) data.Add(s.Name);
        return data;
    }

    [Theory]
    [MemberData(nameof(Steps))]
    public void Convert_StepFails_SourceAndPreviousIntact_NoTemporaries(string stepName)
    {
        var step = CommitFaults.BundleSteps.Single(s => s.Name == stepName);
        using var dir = new TempDir("convert-fault");
        var source = Path.Combine(dir.Path, "src", "ckpt");
        using (var w = new TensorBundleWriter(source, new TensorBundleWriterOptions { ShardCount = 2 }))
        {
            w.Add("a", DType.Float, new TensorShape(1000), new byte[4000], shardId: 0);
            w.AddStrings("b", new TensorShape(2), ["x"u8.ToArray(), "yz"u8.ToArray()], shardId: 1);
            w.Finish();
        }
        var outDir = Path.Combine(dir.Path, "out");
        var previous = Path.Combine(outDir, "first");
        Assert.Equal(0, ConvertCommand.Run(source, previous, TextWriter.Null));
        var before = CommitFaults.Snapshot(dir.Path);

        var storage = new FaultInjectingShardStorage(LocalShardStorage.Instance);
        step.Arm(storage);
        var error = Assert.ThrowsAny<IOException>(() => ConvertCommand.Run(source, Path.Combine(outDir, "second"), TextWriter.Null, storage: storage));
        Assert.Contains("injected", error.Message, StringComparison.Ordinal);
        CommitFaults.Disarm(storage);
        CommitFaults.AssertIntact(step.Name, Path.Combine(dir.Path, "src"), source, before.Where(kv => kv.Key.StartsWith("src", StringComparison.Ordinal))
            .ToDictionary(kv => Path.GetRelativePath("src", kv.Key), kv => kv.Value), stateBefore: null);
        CommitFaults.AssertIntact(step.Name, outDir, previous, before.Where(kv => kv.Key.StartsWith("out", StringComparison.Ordinal))
            .ToDictionary(kv => Path.GetRelativePath("out", kv.Key), kv => kv.Value), stateBefore: null);
        if (!step.AfterCommitPoint) Assert.False(File.Exists(Path.Combine(outDir, "second.index")));
    }
}

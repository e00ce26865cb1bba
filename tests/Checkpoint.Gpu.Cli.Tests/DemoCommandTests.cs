using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Cli.Tests;

/// <summary><c>ckpt demo</c> end to end: train, crash, restart with restore-on-create, identical loss curve.</summary>
public sealed class DemoCommandTests
{
    [Fact]
    public void Demo_SmallModel_ResumedLossCurveIsIdentical()
    {
        using var tmp = new TempDir("demo");
        var r = CkptProcess.Run("demo", "--steps", "40", "--every", "10", "--params", "2000", "--dir", tmp.Path);
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        Assert.Contains("loss curve     identical for all", r.StdOut);
        Assert.Contains("final weights  bit-identical", r.StdOut);
        // The restarted run resumed from the last checkpoint the crashed process wrote (crash at step 29: ckpt-2 = step 20).
        Assert.Contains(Path.Combine(tmp.Path, "restarted", "ckpt-2"), r.StdOut);
        Assert.True(File.Exists(Path.Combine(tmp.Path, "uninterrupted", "checkpoint")));
    }

    [Fact]
    public void Demo_NonEmptyDirectory_ExitsTwo()
    {
        using var tmp = new TempDir("demo-busy");
        Directory.CreateDirectory(Path.Combine(tmp.Path, "uninterrupted"));
        File.WriteAllText(Path.Combine(tmp.Path, "uninterrupted", "checkpoint"), "x");
        var r = CkptProcess.Run("demo", "--steps", "10", "--every", "5", "--dir", tmp.Path);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("not empty", r.StdErr);
    }
}

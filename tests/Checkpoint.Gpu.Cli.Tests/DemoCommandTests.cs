using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Cli.Tests;

/// <summary><c>ckpt demo</c> end to end: train, crash, restart with restore-on-create, identical loss curve.</summary>
public sealed class DemoCommandTests
{
    [Fact]
    public void Demo_SmallModel_ResumedLossCurveIsIdentical()
    {
        using var tmp = new TempDir("demo");
        var r = CkptProcess.Run("demo", "--steps", "80", "--every", "10", "--params", "2000", "--dir", tmp.Path);
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        Assert.Contains("loss curve     identical for all", r.StdOut);
        Assert.Contains("final weights  bit-identical", r.StdOut);
        // The restarted run resumed from the last checkpoint the crashed process wrote (crash at step 53: ckpt-5 = step 50),
        // and by its end the manager (max_to_keep 3) has pruned that checkpoint: the demo must not need it afterwards.
        Assert.Contains(Path.Combine(tmp.Path, "restarted", "ckpt-5"), r.StdOut);
        Assert.False(File.Exists(Path.Combine(tmp.Path, "restarted", "ckpt-5.index")));
        Assert.True(File.Exists(Path.Combine(tmp.Path, "uninterrupted", "checkpoint")));
    }

    [Fact]
    public void Demo_Json_ReportsIdenticalResumeAndNothingElseOnStdout()
    {
        using var tmp = new TempDir("demo-json");
        var r = CkptProcess.Run("demo", "--steps", "30", "--every", "10", "--params", "1500", "--dir", tmp.Path, "--json");
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        using var doc = System.Text.Json.JsonDocument.Parse(r.StdOut);   // stdout is exactly one JSON document
        var root = doc.RootElement;
        Assert.True(root.GetProperty("ok").GetBoolean());
        Assert.Equal(0, root.GetProperty("differing_losses").GetInt32());
        Assert.True(root.GetProperty("final_weights_identical").GetBoolean());
        Assert.Equal(3, root.GetProperty("checkpoints_written").GetInt32());
        // Crash at step 30*3/5 + 10/2 = 23: the restart resumes from ckpt-2 (step 20) and trains 21..30.
        Assert.Equal(21, root.GetProperty("resumed_first_step").GetInt32());
        Assert.Contains("training an MLP", r.StdErr);
    }

    [Fact]
    public void Demo_ThreeWorkers_ReplicasResumeFromAMergedMultiWorkerCheckpoint()
    {
        using var tmp = new TempDir("demo-workers");
        var r = CkptProcess.Run("demo", "--steps", "30", "--every", "10", "--params", "1500", "--dir", tmp.Path, "--workers", "3", "--json");
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        using var doc = System.Text.Json.JsonDocument.Parse(r.StdOut);
        var root = doc.RootElement;
        Assert.True(root.GetProperty("ok").GetBoolean());
        Assert.Equal(3, root.GetProperty("workers").GetInt32());
        Assert.True(root.GetProperty("replicas_agree").GetBoolean());
        Assert.Equal(0, root.GetProperty("differing_losses").GetInt32());
        Assert.True(root.GetProperty("final_weights_identical").GetBoolean());
        // Crash at step 23: the replicas resume from ckpt-2, which three workers wrote in shares and the chief merged.
        var resumedFrom = root.GetProperty("resumed_from").GetString()!;
        Assert.Equal(Path.Combine(tmp.Path, "restarted", "ckpt-2"), resumedFrom);
        Assert.Equal(3, root.GetProperty("resumed_from_data_files").GetInt32());
        using var reader = Format.TensorBundleReader.Open(resumedFrom);
        Assert.Equal(3, reader.Header.ShardCount);
        foreach (var e in reader.Entries) reader.VerifyEntry(e);
        // Only the chief wrote the state file; nothing of the protocol is left behind.
        Assert.True(File.Exists(Path.Combine(tmp.Path, "restarted", "checkpoint")));
        Assert.Empty(Directory.EnumerateDirectories(Path.Combine(tmp.Path, "restarted"), "*_temp"));
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(tmp.Path, "coordination"), "*.rank-*"));
    }

    [Fact]
    public void Demo_MpiLauncher_ThreeRanksUnderMpiexec_ResumeBitIdentical()
    {
        if (!File.Exists("/usr/bin/mpiexec") && !File.Exists("/usr/bin/mpiexec.mpich"))
        {
            Assert.False(string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase), "MPICH is not installed: apt-get install mpich");
            return;
        }
        using var tmp = new TempDir("demo-mpi");
        var r = CkptProcess.Run("demo", "--steps", "30", "--every", "10", "--params", "1500", "--dir", tmp.Path, "--launcher", "mpi", "--workers", "3", "--json");
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        using var doc = System.Text.Json.JsonDocument.Parse(r.StdOut);
        var root = doc.RootElement;
        Assert.True(root.GetProperty("ok").GetBoolean());
        Assert.Equal(3, root.GetProperty("workers").GetInt32());
        Assert.True(root.GetProperty("replicas_agree").GetBoolean());
        Assert.Equal(0, root.GetProperty("differing_losses").GetInt32());
        Assert.True(root.GetProperty("final_weights_identical").GetBoolean());
        var resumedFrom = root.GetProperty("resumed_from").GetString()!;
        using var reader = Format.TensorBundleReader.Open(resumedFrom);
        Assert.Equal(3, reader.Header.ShardCount);
        foreach (var e in reader.Entries) reader.VerifyEntry(e);
        // MPI coordination: no marker files at all.
        Assert.False(Directory.Exists(Path.Combine(tmp.Path, "coordination")) && Directory.EnumerateFiles(Path.Combine(tmp.Path, "coordination")).Any());
        Assert.Empty(Directory.EnumerateDirectories(Path.Combine(tmp.Path, "restarted"), "*_temp"));
    }

    [Fact]
    public void Demo_BadWorkerCount_ExitsTwo()
    {
        var r = CkptProcess.Run("demo", "--workers", "9");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--workers", r.StdErr);
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

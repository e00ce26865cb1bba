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
        // No empty folders left behind (the workers' coordination directory included).
        Assert.DoesNotContain(Directory.EnumerateDirectories(tmp.Path, "*", SearchOption.AllDirectories), d => !Directory.EnumerateFileSystemEntries(d).Any());
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
        Assert.Contains("training a byte-level language model", r.StdErr);
        // The data came from the SDK's reference XML docs, found at run time, and the resumed process saw the same batches.
        var dataset = root.GetProperty("dataset").GetString()!;
        Assert.EndsWith("*.xml", dataset);
        Assert.Contains("Microsoft.NETCore.App.Ref", dataset);
        Assert.True(root.GetProperty("resumed_batches_identical").GetBoolean());
        // Each save reports its loop-blocked time next to its duration and size.
        var saves = root.GetProperty("saves").EnumerateArray().ToArray();
        Assert.Equal([10L, 20L, 30L], saves.Select(x => x.GetProperty("step").GetInt64()));
        Assert.All(saves, x => Assert.True(x.GetProperty("bytes").GetInt64() > 0 && x.GetProperty("duration_seconds").GetDouble() >= x.GetProperty("blocked_seconds").GetDouble()));
    }

    [Fact]
    public void Demo_DataFile_IteratorStateIsInTheCheckpoint_AndResumedBatchesAreIdentical()
    {
        using var tmp = new TempDir("demo-data");
        // A small text of its own (not the SDK docs): 40 KB of seeded words, enough for 1,200 sequences of 33 bytes.
        var rng = new Random(7);
        string[] words = ["the", "checkpoint", "of", "a", "model", "is", "saved", "restored", "and", "byte", "level", "text"];
        var text = string.Join(' ', Enumerable.Range(0, 8000).Select(_ => words[rng.Next(words.Length)]));
        var file = Path.Combine(tmp.Path, "corpus.txt");
        File.WriteAllText(file, text);
        var run = Path.Combine(tmp.Path, "run");
        var r = CkptProcess.Run("demo", "--steps", "30", "--every", "10", "--params", "1500", "--dir", run, "--data", file, "--json");
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        using var doc = System.Text.Json.JsonDocument.Parse(r.StdOut);
        var root = doc.RootElement;
        Assert.True(root.GetProperty("ok").GetBoolean());
        Assert.Equal(file, root.GetProperty("dataset").GetString());
        Assert.True(root.GetProperty("resumed_batches_identical").GetBoolean());
        Assert.Equal(0, root.GetProperty("differing_losses").GetInt32());
        // The last checkpoint holds the iterator's state under TF's key, at 30 batches (one per step), beside the optimizer's step.
        var last = Path.Combine(run, "uninterrupted", "ckpt-3");
        using var reader = Format.TensorBundleReader.Open(last);
        var state = reader.ReadStrings(reader.GetEntry("iterator/.ATTRIBUTES/ITERATOR_STATE"))[0];
        using var stateDoc = System.Text.Json.JsonDocument.Parse(state);
        Assert.Equal(30, stateDoc.RootElement.GetProperty("batches").GetInt64());
        var iter = new byte[8];
        reader.ReadTensor(reader.GetEntry("optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"), iter);
        Assert.Equal(30, BitConverter.ToInt64(iter));
        Assert.Contains(reader.Entries, e => e.Key.Contains("embeddings", StringComparison.Ordinal));
    }

    [Fact]
    public void Demo_MissingDataFile_ExitsTwoNamingTheFile()
    {
        using var tmp = new TempDir("demo-nodata");
        var missing = Path.Combine(tmp.Path, "no-such-corpus.txt");
        var r = CkptProcess.Run("demo", "--steps", "10", "--every", "5", "--dir", Path.Combine(tmp.Path, "run"), "--data", missing);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("no-such-corpus.txt", r.StdErr);

        var empty = Path.Combine(tmp.Path, "empty.txt");
        File.WriteAllBytes(empty, []);
        r = CkptProcess.Run("demo", "--steps", "10", "--every", "5", "--dir", Path.Combine(tmp.Path, "run2"), "--data", empty);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("empty.txt", r.StdErr);

        // 100 bytes hold 3 sequences of 33 bytes, fewer than one batch of 64.
        var tiny = Path.Combine(tmp.Path, "tiny.txt");
        File.WriteAllText(tiny, new string('x', 100));
        r = CkptProcess.Run("demo", "--steps", "10", "--every", "5", "--dir", Path.Combine(tmp.Path, "run3"), "--data", tiny);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("tiny.txt", r.StdErr);
        Assert.Contains("fewer than one batch", r.StdErr);
        // Nothing was created for runs that could not start.
        Assert.Empty(Directory.EnumerateDirectories(tmp.Path));
    }

    [Fact]
    public void Demo_ThreeWorkers_ReplicasResumeFromAMergedMultiWorkerCheckpoint()
    {
        using var tmp = new TempDir("demo-workers");
        var r = CkptProcess.Run("demo", "--steps", "30", "--every", "10", "--params", "1500", "--dir", tmp.Path, "--workers", "3", "--json");
        using var doc = AssertReplicasAgree(r, workers: 3);
        var root = doc.RootElement;
        Assert.True(root.GetProperty("resumed_batches_identical").GetBoolean());
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
        var coordination = Path.Combine(tmp.Path, "coordination");
        Assert.False(Directory.Exists(coordination) && Directory.EnumerateFiles(coordination, "*.rank-*").Any());
        Assert.DoesNotContain(Directory.EnumerateDirectories(tmp.Path, "*", SearchOption.AllDirectories), d => !Directory.EnumerateFileSystemEntries(d).Any());
    }

    [Fact]
    public void Demo_PreemptAfter_FinalCheckpointHoldsAStepNoOlderThanTheSignal()
    {
        using var tmp = new TempDir("demo-preempt");
        // Far more steps than 2 s allow: the self-sent SIGTERM must stop training, not the end of the schedule.
        var r = CkptProcess.Run("demo", "--steps", "10000000", "--every", "25", "--params", "2000", "--dir", tmp.Path, "--preempt-after", "2", "--json");
        Assert.True(r.ExitCode == 42, $"exit {r.ExitCode}: {r.StdOut} {r.StdErr}");   // PreemptionOptions.DefaultExitCode (TF's restart code)
        using var doc = System.Text.Json.JsonDocument.Parse(r.StdOut);
        var root = doc.RootElement;
        Assert.True(root.GetProperty("preempted").GetBoolean());
        var signalStep = root.GetProperty("signal_step").GetInt64();
        var finalStep = root.GetProperty("final_checkpoint_step").GetInt64();
        var final = root.GetProperty("final_checkpoint").GetString()!;
        Assert.True(signalStep > 0, r.StdOut);
        Assert.True(finalStep >= signalStep, r.StdOut);
        Assert.Contains("received SIGTERM", r.StdErr);
        // The state file names the final checkpoint, and the optimizer step stored in it is the reported step (read from TF's bytes).
        Assert.Equal(final, Format.CheckpointStateFile.LatestCheckpoint(Path.Combine(tmp.Path, "preempted")));
        using var reader = Format.TensorBundleReader.Open(final);
        foreach (var e in reader.Entries) reader.VerifyEntry(e);
        var iter = new byte[8];
        reader.ReadTensor(reader.GetEntry("optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"), iter);
        Assert.Equal(finalStep, BitConverter.ToInt64(iter));
        Assert.Empty(Pipeline.CheckpointDebris.Find(Path.Combine(tmp.Path, "preempted")));
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
        using var doc = AssertReplicasAgree(r, workers: 3);
        var root = doc.RootElement;
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

    /// <summary>The keys every multi-worker demo run reports (filesystem or MPI launcher): exit 0, ok, replicas agree.</summary>
    private static System.Text.Json.JsonDocument AssertReplicasAgree(CkptProcess.Result r, int workers)
    {
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        var doc = System.Text.Json.JsonDocument.Parse(r.StdOut);
        var root = doc.RootElement;
        Assert.True(root.GetProperty("ok").GetBoolean());
        Assert.Equal(workers, root.GetProperty("workers").GetInt32());
        Assert.True(root.GetProperty("replicas_agree").GetBoolean());
        Assert.Equal(0, root.GetProperty("differing_losses").GetInt32());
        Assert.True(root.GetProperty("final_weights_identical").GetBoolean());
        return doc;
    }
}

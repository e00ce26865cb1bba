using System.Security.Cryptography;
using System.Text.Json;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Cli.Tests;

/// <summary>
/// Drives <c>ckpt</c> as a process over the TensorFlow-written corpus. Expected keys, dtypes and
/// shapes come from the files' provenance (MANIFEST.md, shared/docs/tf-checkpoint-format.md), and
/// every checksum checked was computed by TensorFlow.
/// </summary>
public sealed class CliTests
{
    public static TheoryData<string> Prefixes => TfCorpus.PrefixRows();

    private static string Corpus(string relative) => Path.Combine(TfCorpus.RequireRoot(), relative);

    [CorpusFact]
    public void Inspect_Keras3ManagerDirectory_UsesLatestFromStateFileAndListsGraph()
    {
        // The state file's model_checkpoint_path is ckpt-1, not the highest number (MANIFEST.md).
        var r = CkptProcess.Run("inspect", Corpus("obj-keras3-tf219-manager-3ckpts"), "--json");
        Assert.True(r.ExitCode == 0, r.StdErr);
        using var doc = JsonDocument.Parse(r.StdOut);
        var root = doc.RootElement;
        Assert.EndsWith("ckpt-1", root.GetProperty("prefix").GetString());
        var entries = root.GetProperty("entries").EnumerateArray().ToArray();
        var counter = entries.Single(e => e.GetProperty("key").GetString() == "save_counter/.ATTRIBUTES/VARIABLE_VALUE");
        Assert.Equal("int64", counter.GetProperty("dtype").GetString());
        Assert.Equal(0, counter.GetProperty("shape").GetArrayLength());
        Assert.Equal(8, counter.GetProperty("size").GetInt64());
        Assert.Contains(entries, e => e.GetProperty("key").GetString() == "_CHECKPOINTABLE_OBJECT_GRAPH" && e.GetProperty("dtype").GetString() == "string");
        var nodes = root.GetProperty("object_graph").GetProperty("nodes").EnumerateArray().ToArray();
        var rootChildren = nodes[0].GetProperty("children").EnumerateArray()
            .Select(c => (c.GetProperty("local_name").GetString()!, c.GetProperty("node_id").GetInt32())).ToArray();
        // Observed in this very file (tf-checkpoint-format.md §6.2): sorted kwargs, then save_counter.
        Assert.Equal(new[] { ("compensator", 1), ("compensator_optimizer", 2), ("save_counter", 3) }, rootChildren);
        Assert.Equal("(root).save_counter", nodes[3].GetProperty("path").GetString());
    }

    [CorpusFact]
    public void Inspect_NameBasedHalfPlusThree_ListsScalarsAndNullGraph()
    {
        var r = CkptProcess.Run("inspect", Corpus("smv1-tf10-half-plus-three/variables/variables"), "--json");
        Assert.True(r.ExitCode == 0, r.StdErr);
        using var doc = JsonDocument.Parse(r.StdOut);
        Assert.Equal(JsonValueKind.Null, doc.RootElement.GetProperty("object_graph").ValueKind);
        var entries = doc.RootElement.GetProperty("entries").EnumerateArray().ToArray();
        Assert.Equal(new[] { "a", "b", "c" }, entries.Select(e => e.GetProperty("key").GetString()).ToArray());
        Assert.All(entries, e =>
        {
            Assert.Equal("float32", e.GetProperty("dtype").GetString());
            Assert.Equal(4, e.GetProperty("size").GetInt64());
        });
    }

    [CorpusFact]
    public void Inspect_Text_ShowsObjectGraphPaths()
    {
        var r = CkptProcess.Run("inspect", Corpus("obj-golf-dqn-2ckpts"));
        Assert.True(r.ExitCode == 0, r.StdErr);
        Assert.Contains("object-based", r.StdOut);
        Assert.Contains("(root).save_counter", r.StdOut);
        Assert.Contains(".OPTIMIZER_SLOT/net/optimizer/m", r.StdOut);
    }

    [CorpusTheory]
    [MemberData(nameof(Prefixes))]
    public void Verify_EveryCorpusCheckpoint_MatchesTensorFlowChecksums(string prefix)
    {
        var r = CkptProcess.Run("verify", Corpus(prefix), "--json");
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        using var doc = JsonDocument.Parse(r.StdOut);
        Assert.True(doc.RootElement.GetProperty("ok").GetBoolean());
        Assert.Equal(0, doc.RootElement.GetProperty("failures").GetArrayLength());
    }

    [CorpusTheory]
    [MemberData(nameof(Prefixes))]
    public void Convert_EveryCorpusCheckpoint_IsByteIdentical(string prefix)
    {
        using var tmp = new TempDir("convert");
        var source = Corpus(prefix);
        var destination = tmp.File("out");
        var r = CkptProcess.Run("convert", source, destination);
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        var sourceFiles = BundleFiles(source);
        var destinationFiles = BundleFiles(destination);
        Assert.Equal(sourceFiles.Select(f => f.Suffix), destinationFiles.Select(f => f.Suffix));
        foreach (var ((_, src), (suffix, dst)) in sourceFiles.Zip(destinationFiles))
            Assert.True(SHA256.HashData(File.ReadAllBytes(src)).AsSpan().SequenceEqual(SHA256.HashData(File.ReadAllBytes(dst))), $"{suffix} differs");
    }

    [CorpusFact]
    public void Verify_FlippedDataByte_ExitsOneNamingKeyAndOffset()
    {
        using var tmp = new TempDir("corrupt");
        var source = Corpus("v1-my-test-model-tf14/my_test_model-1000");
        var prefix = tmp.File("my_test_model-1000");
        File.Copy(source + ".index", prefix + ".index");
        var data = File.ReadAllBytes(source + ".data-00000-of-00001");
        data[40] ^= 0x01;   // inside W, the only tensor (84 bytes: float32 [21, 1])
        File.WriteAllBytes(prefix + ".data-00000-of-00001", data);

        var r = CkptProcess.Run("verify", prefix, "--json");
        Assert.Equal(1, r.ExitCode);
        using var doc = JsonDocument.Parse(r.StdOut);
        Assert.False(doc.RootElement.GetProperty("ok").GetBoolean());
        var failure = doc.RootElement.GetProperty("failures").EnumerateArray().Single();
        Assert.Equal("W", failure.GetProperty("key").GetString());
        Assert.Equal(0, failure.GetProperty("shard").GetInt32());
        Assert.Contains("data-00000-of-00001", failure.GetProperty("file").GetString());

        var text = CkptProcess.Run("verify", prefix);
        Assert.Equal(1, text.ExitCode);
        Assert.Contains("'W'", text.StdOut);
    }

    [Fact]
    public void Inspect_MissingPath_ExitsTwoNamingPath()
    {
        using var tmp = new TempDir("missing");
        var path = tmp.File("no-such-ckpt");
        var r = CkptProcess.Run("inspect", path);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("no-such-ckpt", r.StdErr);
    }

    [Fact]
    public void Verify_TruncatedIndex_ExitsOne()
    {
        using var tmp = new TempDir("trunc");
        var prefix = tmp.File("bad");
        File.WriteAllBytes(prefix + ".index", new byte[] { 0x00, 0x00, 0x06, 0x08, 0x01 });
        File.WriteAllBytes(prefix + ".data-00000-of-00001", []);
        var r = CkptProcess.Run("verify", prefix);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("bad.index", r.StdErr);
    }

    [CorpusFact]
    public void Inspect_LegacyV1SingleFile_ExitsTwoWithExplanation()
    {
        // A TF V1 checkpoint is one SSTable at the prefix itself, with no PREFIX.index (format doc §10.8):
        // any TF-written table stored under the bare prefix name has that layout.
        using var tmp = new TempDir("v1");
        var prefix = tmp.File("model.ckpt");
        File.Copy(Corpus("smv1-counter-scalar/variables/variables.index"), prefix);
        var r = CkptProcess.Run("inspect", prefix);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("V1", r.StdErr);
    }

    [Theory]
    [InlineData]
    [InlineData("inspect")]
    [InlineData("frobnicate")]
    [InlineData("verify", "--no-such-option", "x")]
    public void Usage_Errors_ExitTwo(params string[] args)
    {
        var r = CkptProcess.Run(args);
        Assert.Equal(2, r.ExitCode);
    }

    [Fact]
    public void Help_OnEveryCommand_ExitsZeroWithExamples()
    {
        foreach (var command in new[] { "inspect", "verify", "convert", "diff", "restore", "demo", "bench" })
        {
            var r = CkptProcess.Run(command, "--help");
            Assert.Equal(0, r.ExitCode);
            Assert.Contains("Examples:", r.StdOut);
        }
    }

    [CorpusFact]
    public void Diff_ManagerCheckpointsOneAndSix_ReportSaveCounterDifferenceOfFive()
    {
        // CheckpointManager names checkpoint N after save_counter = N (format doc §1.2), so the
        // counters of ckpt-1 and ckpt-6 differ by exactly 5; the trained weights differ too.
        var dir = Corpus("obj-dqn-nstep-6ckpts");
        var r = CkptProcess.Run("diff", Path.Combine(dir, "ckpt-1"), Path.Combine(dir, "ckpt-6"), "--json");
        Assert.True(r.ExitCode == 1, r.StdOut + r.StdErr);
        using var doc = JsonDocument.Parse(r.StdOut);
        var root = doc.RootElement;
        Assert.False(root.GetProperty("same").GetBoolean());
        Assert.Equal(0, root.GetProperty("only_in_a").GetArrayLength());
        Assert.Equal(0, root.GetProperty("only_in_b").GetArrayLength());
        var changed = root.GetProperty("changed").EnumerateArray().ToDictionary(c => c.GetProperty("key").GetString()!);
        Assert.Equal(5.0, changed["save_counter/.ATTRIBUTES/VARIABLE_VALUE"].GetProperty("max_abs_difference").GetDouble());
        Assert.True(changed.Count > 2);
    }

    [CorpusFact]
    public void Diff_CheckpointWithItself_ExitsZero()
    {
        var prefix = Corpus("obj-sharded2-rl/ckpt-5");
        var r = CkptProcess.Run("diff", prefix, prefix);
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        Assert.Contains("same:", r.StdOut);
    }

    [CorpusFact]
    public void Diff_UnrelatedModels_ListsKeysOnlyInEach()
    {
        var r = CkptProcess.Run("diff", Corpus("smv1-tf10-half-plus-three/variables/variables"),
            Corpus("smv1-counter-scalar/variables/variables"), "--json");
        Assert.Equal(1, r.ExitCode);
        using var doc = JsonDocument.Parse(r.StdOut);
        Assert.Equal(new[] { "a", "b", "c" }, doc.RootElement.GetProperty("only_in_a").EnumerateArray().Select(e => e.GetString()).ToArray());
        Assert.Equal(new[] { "counter" }, doc.RootElement.GetProperty("only_in_b").EnumerateArray().Select(e => e.GetString()).ToArray());
    }

    private static (string Suffix, string Path)[] BundleFiles(string prefix)
    {
        var dir = Path.GetDirectoryName(prefix)!;
        var name = Path.GetFileName(prefix);
        return Directory.GetFiles(dir, name + ".*")
            .Where(f => f.EndsWith(".index", StringComparison.Ordinal) || f[(dir.Length + 1 + name.Length)..].StartsWith(".data-", StringComparison.Ordinal))
            .Select(f => (Suffix: f[(dir.Length + 1 + name.Length)..], Path: f))
            .OrderBy(t => t.Suffix, StringComparer.Ordinal).ToArray();
    }
}

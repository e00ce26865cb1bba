using System.Diagnostics;
using CheckpointGpu.TestSupport;
using Xunit.Abstractions;

namespace CheckpointGpu.Cli.Tests;

/// <summary>
/// No input ends in an unhandled exception: every command over every corpus case, then thousands of seeded byte flips
/// and truncations of index and data files, each run through the tool's own dispatch in-process (and a sample as real
/// processes). Every run must exit 0, 1 or 2 with no stack trace, within 5 s.
/// </summary>
[Trait("Category", "Robustness")]
public sealed class CliRobustnessTests(ITestOutputHelper output)
{
    private static readonly string[] s_commands = ["inspect", "inspect --json", "verify", "verify --json", "convert", "diff", "restore"];

    /// <summary>Small-to-medium corpus prefixes covering name-based, object-based, sharded, strings and lookup tables.</summary>
    private static readonly string[] s_mutationCases =
    [
        "smv1-tf121-regression/variables/variables",
        "v1-my-test-model-tf14/my_test_model-1000",
        "kw-subclassed-actor-critic/my_checkpoint",
        "obj-dqn-nstep-6ckpts/ckpt-1",
        "sm-keras-tf23-adam-metrics/variables/variables",
        "obj-keras3-tf219-manager-3ckpts/ckpt-1",
        "sm-keras-tf25dev-stringlookup-small-vocab/variables/variables",
        "sm-tf25-module-sgd-momentum/variables/variables",
        "sm-keras-tf20-sharded2/variables/variables",
        "sm-keras212-objgraph-only/variables/variables",
    ];

    private static int MutationCount => int.TryParse(Environment.GetEnvironmentVariable("CKPT_MUTATION_CASES"), out var n) ? n : 2100;

    private static string[] Args(string command, string prefix, string scratch)
    {
        var parts = command.Split(' ');
        return parts[0] switch
        {
            "convert" => ["convert", prefix, Path.Combine(scratch, "converted", "c")],
            "diff" => ["diff", prefix, prefix],
            "restore" => ["restore", prefix, "--device", "cpu"],
            _ => [.. parts.Take(1), prefix, .. parts.Skip(1)],
        };
    }

    [CorpusFact]
    public async Task EveryCommand_OverEveryCorpusPrefix_ExitsZeroWithoutStackTrace()
    {
        using var scratch = new TempDir("robust-corpus");
        var counts = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var runs = 0;
        foreach (var (_, prefix) in TfCorpus.AllPrefixes())
        {
            foreach (var command in s_commands)
            {
                var r = await CkptInProcess.RunAsync(Args(command, prefix, scratch.Path));
                runs++;
                var key = $"{command.Split(' ')[0]} exit {r.ExitCode}";
                counts[key] = counts.GetValueOrDefault(key) + 1;
                Assert.False(CkptInProcess.LooksLikeCrash(r.StdErr), $"{command} {prefix}: {r.StdErr}");
                Assert.True(r.ExitCode == 0, $"{command} {prefix} exited {r.ExitCode}: {r.StdErr}");
            }
        }
        output.WriteLine($"{runs} runs over {TfCorpus.AllPrefixes().Count} prefixes: " + string.Join(", ", counts.Select(kv => $"{kv.Key}: {kv.Value}")));
    }

    private sealed record Mutation(int Seed, string Case, string File, string Kind, long Position, string Command);

    /// <summary>Applies one seeded flip or truncation to a fresh copy of a corpus case; returns the prefix to run on.</summary>
    private static (string Prefix, Mutation Mutation) Mutate(int seed, string scratch)
    {
        var random = new Random(seed);
        var relative = s_mutationCases[random.Next(s_mutationCases.Length)];
        var source = Path.Combine(TfCorpus.RequireRoot(), relative);
        var dir = Path.Combine(scratch, "m" + seed);
        Directory.CreateDirectory(dir);
        var prefix = Path.Combine(dir, Path.GetFileName(source));
        var files = Directory.GetFiles(Path.GetDirectoryName(source)!, Path.GetFileName(source) + ".*")
            .Where(f => f.EndsWith(".index", StringComparison.Ordinal) || f.Contains(".data-", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToArray();
        foreach (var f in files) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        // Index and data files alike (the index half the time: it is where the parsers are).
        var target = random.Next(2) == 0
            ? prefix + ".index"
            : Path.Combine(dir, Path.GetFileName(files.Where(f => f.Contains(".data-", StringComparison.Ordinal)).ElementAt(random.Next(files.Length - 1))));
        var bytes = File.ReadAllBytes(target);
        string kind;
        long position;
        switch (random.Next(4))
        {
            case 0 when bytes.Length > 0:
                kind = "truncate";
                position = random.Next(bytes.Length);
                bytes = bytes[..(int)position];
                break;
            case 1 when bytes.Length > 0:
                kind = "flip bits";
                position = random.Next(bytes.Length);
                bytes[position] ^= (byte)(1 << random.Next(8));
                break;
            case 2 when bytes.Length > 0:
                kind = "random bytes";
                position = random.Next(bytes.Length);
                for (var i = position; i < Math.Min(bytes.Length, position + 1 + random.Next(8)); i++) bytes[i] = (byte)random.Next(256);
                break;
            default:
                kind = "append";
                position = bytes.Length;
                bytes = [.. bytes, .. Enumerable.Range(0, 1 + random.Next(16)).Select(_ => (byte)random.Next(256))];
                break;
        }
        File.WriteAllBytes(target, bytes);
        var command = s_commands[random.Next(s_commands.Length)];
        return (prefix, new Mutation(seed, relative, Path.GetFileName(target), kind, position, command));
    }

    [CorpusFact]
    public async Task EveryCommand_OverSeededFlipsAndTruncations_ExitsZeroOneOrTwoWithoutStackTrace()
    {
        using var scratch = new TempDir("robust-mut");
        var counts = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var clock = Stopwatch.StartNew();
        var slowest = TimeSpan.Zero;
        for (var seed = 1; seed <= MutationCount; seed++)
        {
            var (prefix, m) = Mutate(seed, scratch.Path);
            var r = await CkptInProcess.RunAsync(Args(m.Command, prefix, Path.GetDirectoryName(prefix)!));
            var what = $"seed {seed}: {m.Command} on {m.Case} after {m.Kind} of {m.File} at {m.Position}";
            Assert.True(r.ExitCode is 0 or 1 or 2, $"{what}: exit {r.ExitCode}");
            Assert.False(CkptInProcess.LooksLikeCrash(r.StdErr), $"{what}: {r.StdErr}");
            Assert.True(r.Elapsed < TimeSpan.FromSeconds(5), $"{what}: took {r.Elapsed.TotalSeconds:F1} s");
            if (r.ExitCode != 0)
            {
                // One line, and it names a file.
                var line = r.StdErr.TrimEnd();
                Assert.DoesNotContain('\n', line);
                Assert.True(line.Contains(Path.GetFileName(prefix), StringComparison.Ordinal) || line.Contains(m.File, StringComparison.Ordinal)
                    || line.Contains(Path.GetDirectoryName(prefix)!, StringComparison.Ordinal) || r.StdOut.Contains("FAILED", StringComparison.Ordinal)
                    || m.Command.StartsWith("verify --json", StringComparison.Ordinal) || m.Command == "diff",
                    $"{what}: message does not name the file: {r.StdErr}");
            }
            slowest = r.Elapsed > slowest ? r.Elapsed : slowest;
            var key = $"{m.File.Split('.')[^1].Split('-')[0]} {m.Kind} / {m.Command.Split(' ')[0]} -> exit {r.ExitCode}";
            counts[key] = counts.GetValueOrDefault(key) + 1;
            Directory.Delete(Path.GetDirectoryName(prefix)!, recursive: true);
        }
        output.WriteLine($"{MutationCount} mutations in {clock.Elapsed.TotalSeconds:F1} s (slowest run {slowest.TotalMilliseconds:F0} ms); outcomes:");
        foreach (var (k, v) in counts) output.WriteLine($"  {v,5}  {k}");
        var byExit = counts.GroupBy(kv => kv.Key[^1]).ToDictionary(g => g.Key, g => g.Sum(kv => kv.Value));
        output.WriteLine("by exit code: " + string.Join(", ", byExit.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}: {kv.Value}")));
    }

    [CorpusFact]
    public async Task SampleOfMutations_AsRealProcesses_ExitLikeInProcessWithoutStackTrace()
    {
        using var scratch = new TempDir("robust-proc");
        foreach (var seed in new[] { 3, 17, 29, 101, 257, 1009 })
        {
            var (prefix, m) = Mutate(seed, scratch.Path);
            var args = Args(m.Command, prefix, Path.GetDirectoryName(prefix)!);
            var inProcess = await CkptInProcess.RunAsync(args);
            if (m.Command == "convert") Directory.Delete(Path.Combine(Path.GetDirectoryName(prefix)!, "converted"), recursive: true);
            var process = CkptProcess.Run(args);
            Assert.Equal(inProcess.ExitCode, process.ExitCode);
            Assert.DoesNotContain("   at ", process.StdErr, StringComparison.Ordinal);
            Assert.DoesNotContain("Unhandled", process.StdErr, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Verbose_OnFailure_PrintsTheStackTraceAfterTheOneLineMessage()
    {
        using var tmp = new TempDir("verbose");
        var prefix = tmp.File("bad");
        File.WriteAllBytes(prefix + ".index", [1, 2, 3]);
        var quiet = await CkptInProcess.RunAsync("inspect", prefix);
        var loud = await CkptInProcess.RunAsync("inspect", prefix, "--verbose");
        Assert.Equal(1, quiet.ExitCode);
        Assert.Equal(1, loud.ExitCode);
        Assert.Single(quiet.StdErr.TrimEnd().Split('\n'));
        Assert.StartsWith("ckpt: bad.index: ", quiet.StdErr, StringComparison.Ordinal);
        Assert.StartsWith(quiet.StdErr.TrimEnd(), loud.StdErr, StringComparison.Ordinal);
        Assert.Contains("   at ", loud.StdErr, StringComparison.Ordinal);
    }
}

/// <summary><c>ckpt</c> over a checkpoint whose index has Snappy-compressed blocks (TF's <c>kSnappyCompression</c>).</summary>
public sealed class SnappyIndexCliTests
{
    [CorpusFact]
    public async Task AllCommands_OnSnappyCompressedCorpusIndex_Succeed_ConvertKeepsEntriesAndDataNotIndexBytes()
    {
        using var tmp = new TempDir("snappy-cli");
        var source = Path.Combine(TfCorpus.RequireRoot(), "obj-keras3-tf219-manager-3ckpts/ckpt-1");
        var prefix = tmp.File("ckpt-1");
        File.WriteAllBytes(prefix + ".index", CheckpointGpu.Format.Tests.SnappyTable.Recompress(File.ReadAllBytes(source + ".index"), data: true, index: true));
        File.Copy(source + ".data-00000-of-00001", prefix + ".data-00000-of-00001");

        foreach (var args in new[] { new[] { "inspect", prefix }, ["verify", prefix], ["diff", prefix, source], ["restore", prefix, "--device", "cpu"] })
        {
            var r = await CkptInProcess.RunAsync(args);
            Assert.True(r.ExitCode == 0, $"{args[0]}: {r.StdErr}");
        }
        var converted = tmp.File("converted");
        var c = await CkptInProcess.RunAsync("convert", prefix, converted);
        Assert.True(c.ExitCode == 0, c.StdErr);
        // Uncompressed blocks out: the index equals TensorFlow's original (uncompressed) index, the data file is identical.
        Assert.Equal(File.ReadAllBytes(source + ".index"), File.ReadAllBytes(converted + ".index"));
        Assert.NotEqual(File.ReadAllBytes(prefix + ".index"), File.ReadAllBytes(converted + ".index"));
        Assert.Equal(File.ReadAllBytes(source + ".data-00000-of-00001"), File.ReadAllBytes(converted + ".data-00000-of-00001"));
    }
}

/// <summary>
/// The reported crash: a TF 2.11+ Keras graph has an edge named <c>root</c> from node 0 back to node 0, and
/// <c>ckpt restore</c> died with exit 134 (ArgumentException from AutoTrackable.Track). Reproduced synthetically: the
/// shape (root → root, root → model → kernel, model → optimizer's back-edge to the root) with TF's key naming.
/// </summary>
public sealed class CyclicGraphCliTests
{
    [Fact]
    public async Task RestoreResaveAndInspect_GraphWithRootSelfEdgeAndBackEdges_ExitZeroKeepingEveryEdge()
    {
        using var tmp = new TempDir("cyclic-cli");
        var prefix = tmp.File("ckpt-1");
        var graph = new CheckpointGpu.Format.Protos.TrackableObjectGraph();
        CheckpointGpu.Format.Protos.TrackableObjectGraph.Types.TrackableObject Node(params (string Name, int Id)[] children)
        {
            var n = new CheckpointGpu.Format.Protos.TrackableObjectGraph.Types.TrackableObject();
            foreach (var (name, id) in children)
                n.Children.Add(new CheckpointGpu.Format.Protos.TrackableObjectGraph.Types.TrackableObject.Types.ObjectReference { LocalName = name, NodeId = id });
            return n;
        }
        graph.Nodes.Add(Node(("model", 1), ("root", 0)));
        graph.Nodes.Add(Node(("kernel", 2), ("parent", 0), ("self", 1)));
        var kernel = Node();
        kernel.Attributes.Add(new CheckpointGpu.Format.Protos.TrackableObjectGraph.Types.TrackableObject.Types.SerializedTensor
            { Name = "VARIABLE_VALUE", FullName = "model/kernel", CheckpointKey = "model/kernel/.ATTRIBUTES/VARIABLE_VALUE" });
        graph.Nodes.Add(kernel);
        using (var w = new CheckpointGpu.Format.TensorBundleWriter(prefix))
        {
            w.Add("model/kernel/.ATTRIBUTES/VARIABLE_VALUE", CheckpointGpu.Format.DType.Float, new CheckpointGpu.Format.TensorShape(2), new byte[] { 0, 0, 128, 63, 0, 0, 0, 64 });
            w.AddStrings(CheckpointGpu.Format.CheckpointKeys.ObjectGraph, CheckpointGpu.Format.TensorShape.Scalar, [Google.Protobuf.MessageExtensions.ToByteArray(graph)]);
            w.Finish();
        }

        var restore = await CkptInProcess.RunAsync("restore", prefix, "--device", "cpu", "--resave", tmp.File("resaved"));
        Assert.True(restore.ExitCode == 0, restore.StdErr);
        Assert.Contains("all values consumed", restore.StdOut, StringComparison.Ordinal);
        using (var r = CheckpointGpu.Format.TensorBundleReader.Open(tmp.File("resaved")))
            Assert.Equal(graph, r.ReadObjectGraph());   // every edge kept, including root -> root

        var inspect = await CkptInProcess.RunAsync("inspect", prefix);
        Assert.True(inspect.ExitCode == 0, inspect.StdErr);
        Assert.Contains("(root).model.kernel", inspect.StdOut, StringComparison.Ordinal);
        var verify = await CkptInProcess.RunAsync("verify", tmp.File("resaved"));
        Assert.True(verify.ExitCode == 0, verify.StdErr);
    }
}

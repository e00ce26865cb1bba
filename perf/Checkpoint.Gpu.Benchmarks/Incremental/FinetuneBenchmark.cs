using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Nn;

namespace CheckpointGpu.Benchmarks.Incremental;

/// <summary>
/// Issue 14 console modes: <c>finetune</c> (full vs incremental manager saves of a frozen backbone plus trained adapters
/// with Adam slots, and the adapters written alone) and <c>lz4</c> (LZ4 ratio and speed on corpus tensors, trained MLP
/// weights with Adam moments, random floats). JSON lines on standard output. Never run under <c>dotnet test</c>.
/// </summary>
public static class FinetuneBenchmark
{
    private sealed class Backbone : AutoTrackable
    {
        public List<Variable> Layers { get; } = [];

        public Backbone(Accelerator acc, long bytes, int tensorBytes)
        {
            var count = (int)(bytes / tensorBytes);
            var values = new float[tensorBytes / 4];
            var rng = new Random(14);
            for (var i = 0; i < count; i++)
            {
                for (var j = 0; j < values.Length; j++) values[j] = (float)rng.NextDouble() - 0.5f;
                var v = AddVariable($"layer_{i:D3}", acc, DType.Float, new TensorShape(values.Length));
                v.Assign<float>(values);
                Layers.Add(v);
            }
        }
    }

    private sealed class Adapters : AutoTrackable
    {
        public List<Variable> Weights { get; } = [];

        public Adapters(Accelerator acc, long bytes, int count)
        {
            var per = (int)(bytes / count / 4);
            for (var i = 0; i < count; i++)
            {
                var v = AddVariable($"adapter_{i}", acc, DType.Float, new TensorShape(per));
                v.Assign<float>(Enumerable.Range(0, per).Select(k => (k % 97) * 1e-3f).ToArray());
                Weights.Add(v);
            }
        }
    }

    private static readonly JsonSerializerOptions s_json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    private static void Emit(object line) => Console.WriteLine(JsonSerializer.Serialize(line, s_json));

    /// <summary><c>finetune [--dir D] [--steps N] [--backbone-gib G] [--adapter-mib M]</c>.</summary>
    public static async Task<int> RunFinetuneAsync(string[] args)
    {
        string Arg(string name, string fallback) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        var root = Path.GetFullPath(Arg("--dir", "finetune-bench"));
        var steps = int.Parse(Arg("--steps", "10"), CultureInfo.InvariantCulture);
        var backboneBytes = (long)(double.Parse(Arg("--backbone-gib", "2"), CultureInfo.InvariantCulture) * (1L << 30));
        var adapterBytes = (long)(double.Parse(Arg("--adapter-mib", "16"), CultureInfo.InvariantCulture) * (1L << 20));
        if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        Directory.CreateDirectory(root);

        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        var backbone = new Backbone(acc, backboneBytes, 64 << 20);
        var adapters = new Adapters(acc, adapterBytes, 4);
        using var adam = new Adam(acc, learningRate: 1e-3f);
        var gradients = adapters.Weights.Select(w =>
        {
            var g = acc.Allocate(w.LengthInBytes);
            var host = Enumerable.Repeat(1e-2f, (int)w.ElementCount).ToArray();
            acc.DefaultStream.EnqueueCopyFromHost(MemoryMarshal.AsBytes(host.AsSpan()).ToArray(), g.AsView());
            acc.DefaultStream.Synchronize();
            return new Gradient(w, g);
        }).ToArray();
        adam.ApplyGradients(gradients);   // slots exist from here on

        using var full = new Checkpoint(("backbone", backbone), ("adapters", adapters), ("optimizer", adam)) { Log = null };
        using var incremental = new Checkpoint(("backbone", backbone), ("adapters", adapters), ("optimizer", adam)) { Log = null };
        // The same incremental saves through the IO pipeline (CheckpointManager.SaveAsync), each awaited to durability.
        await using var incrementalAsync = new Checkpoint(("backbone", backbone), ("adapters", adapters), ("optimizer", adam)) { Log = null };
        using var incrAsyncManager = new CheckpointManager(incrementalAsync, Path.Combine(root, "incremental_async"), maxToKeep: 3) { IncrementalSaves = new IncrementalSaveOptions() };
        using var adaptersOnly = new Checkpoint(("adapters", adapters), ("optimizer", adam)) { Log = null };
        using var fullManager = new CheckpointManager(full, Path.Combine(root, "full"), maxToKeep: 2);
        using var incrManager = new CheckpointManager(incremental, Path.Combine(root, "incremental"), maxToKeep: 3) { IncrementalSaves = new IncrementalSaveOptions() };
        using var adaptersManager = new CheckpointManager(adaptersOnly, Path.Combine(root, "adapters"), maxToKeep: 2);

        var times = new Dictionary<string, List<double>> { ["full"] = [], ["incremental"] = [], ["adapters_only"] = [], ["incremental_async"] = [], ["async_call"] = [] };
        var bytes = new Dictionary<string, List<long>> { ["full"] = [], ["incremental"] = [], ["adapters_only"] = [], ["incremental_async"] = [] };
        for (var step = 1; step <= steps; step++)
        {
            adam.ApplyGradients(gradients);
            acc.DefaultStream.Synchronize();
            foreach (var (mode, manager) in new[] { ("full", fullManager), ("incremental", incrManager), ("adapters_only", adaptersManager) })
            {
                var clock = Stopwatch.StartNew();
                var prefix = manager.Save()!;
                var seconds = clock.Elapsed.TotalSeconds;
                // Bytes written by this save: the index plus the data files it wrote (linked files excluded).
                var written = new FileInfo(BundleNaming.IndexFile(prefix)).Length + (mode == "incremental"
                    ? manager.LastIncrementalSave!.BytesWritten
                    : Directory.GetFiles(Path.GetDirectoryName(prefix)!, Path.GetFileName(prefix) + ".data-*").Sum(f => new FileInfo(f).Length));
                times[mode].Add(seconds);
                bytes[mode].Add(written);
                Emit(new { name = "finetune_step", mode, step, bytes = written, seconds = Math.Round(seconds, 4),
                    shards_linked = mode == "incremental" ? manager.LastIncrementalSave!.ShardsLinked : 0 });
            }
            {
                var clock = Stopwatch.StartNew();
                var handle = (await incrAsyncManager.SaveAsync())!;
                var call = clock.Elapsed.TotalSeconds;
                await handle.Completion;
                var seconds = clock.Elapsed.TotalSeconds;
                var report = incrAsyncManager.LastIncrementalSave!;
                var written = new FileInfo(BundleNaming.IndexFile(handle.CheckpointPrefix)).Length + report.BytesWritten;
                times["incremental_async"].Add(seconds);
                times["async_call"].Add(call);
                bytes["incremental_async"].Add(written);
                Emit(new { name = "finetune_step", mode = "incremental_async", step, bytes = written, seconds = Math.Round(seconds, 4),
                    call_seconds = Math.Round(call, 4), shards_linked = report.ShardsLinked });
            }
        }

        // all_verified: every incremental checkpoint left after the run (the manager pruned older ones as it went)
        // passes verify, and still does after pruning all but the newest.
        var verified = incrManager.Checkpoints.All(Verify);
        foreach (var old in incrManager.Checkpoints.SkipLast(1))
            foreach (var f in Directory.GetFiles(Path.GetDirectoryName(old)!, Path.GetFileName(old) + ".*")) File.Delete(f);
        verified &= Verify(incrManager.Checkpoints[^1]);
        var verifiedAsync = incrAsyncManager.Checkpoints.All(Verify);
        foreach (var old in incrAsyncManager.Checkpoints.SkipLast(1))
            foreach (var f in Directory.GetFiles(Path.GetDirectoryName(old)!, Path.GetFileName(old) + ".*")) File.Delete(f);
        verifiedAsync &= Verify(incrAsyncManager.Checkpoints[^1]);

        Emit(new
        {
            name = "finetune_ratios",
            bytes_full = Median(bytes["full"]),
            bytes_incremental = Median(bytes["incremental"]),
            time_full_seconds = Math.Round(Median(times["full"]), 4),
            time_incremental_seconds = Math.Round(Median(times["incremental"]), 4),
            time_adapters_only_seconds = Math.Round(Median(times["adapters_only"]), 4),
            all_verified = verified,
        });
        // Incremental saves through the asynchronous path: time to durable, and how long the caller was blocked.
        Emit(new
        {
            name = "finetune_async",
            bytes_incremental_async = Median(bytes["incremental_async"]),
            time_incremental_async_seconds = Math.Round(Median(times["incremental_async"]), 4),
            time_async_call_seconds = Math.Round(Median(times["async_call"]), 4),
            time_adapters_only_seconds = Math.Round(Median(times["adapters_only"]), 4),
            all_verified = verifiedAsync,
        });
        foreach (var (_, g) in gradients) g.Dispose();
        foreach (var v in backbone.Layers.Concat(adapters.Weights)) v.Dispose();
        Directory.Delete(root, recursive: true);
        return verified && verifiedAsync ? 0 : 1;
    }

    private static bool Verify(string prefix)
    {
        try
        {
            using var reader = TensorBundleReader.Open(prefix);
            foreach (var e in reader.EntriesInDataOrder) reader.ReadEncodedPayload(e, (_, _) => { });
            return true;
        }
        catch (Exception ex) when (ex is CheckpointFormatException or IOException)
        {
            Console.Error.WriteLine($"verify {prefix}: {ex.Message}");
            return false;
        }
    }

    private static double Median(List<double> values)
    {
        var s = values.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }

    private static long Median(List<long> values) => (long)Median(values.Select(v => (double)v).ToList());

    /// <summary><c>lz4 [--corpus DIR] [--repeats N]</c>: compression ratio, GB/s per core, break-even disk bandwidth.</summary>
    public static int RunLz4(string[] args)
    {
        string Arg(string name, string fallback) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        var corpus = Arg("--corpus", FindCorpus() ?? "");
        var repeats = int.Parse(Arg("--repeats", "3"), CultureInfo.InvariantCulture);
        var sets = new List<(string Name, List<(DType DType, byte[] Bytes)> Tensors)>();
        if (Directory.Exists(corpus)) sets.Add(("corpus_tensors", CorpusTensors(corpus)));
        sets.Add(("demo_weights_adam", DemoWeights()));
        var rng = new Random(3);
        var random = new float[16 << 20 >> 2];
        for (var i = 0; i < random.Length; i++) random[i] = (float)(rng.NextDouble() * 2 - 1);
        sets.Add(("random_floats", [(DType.Float, MemoryMarshal.AsBytes(random.AsSpan()).ToArray())]));

        foreach (var (name, tensors) in sets)
            foreach (var shuffle in new[] { false, true })
            {
                var raw = tensors.Sum(t => (long)t.Bytes.Length);
                var one = new BundleCompressionOptions { Shuffle = shuffle, MaxDegreeOfParallelism = 1, MinTensorBytes = 1024 };
                var all = new BundleCompressionOptions { Shuffle = shuffle, MinTensorBytes = 1024 };
                double compress1 = double.MaxValue, compressAll = double.MaxValue, decompress1 = double.MaxValue;
                long stored = 0;
                var dir = Path.Combine(Path.GetTempPath(), $"lz4bench-{Guid.NewGuid():N}");
                try
                {
                    for (var r = 0; r < repeats; r++)
                    {
                        compress1 = Math.Min(compress1, Time(() => stored = CompressAll(tensors, one)));
                        compressAll = Math.Min(compressAll, Time(() => CompressAll(tensors, all)));
                    }
                    // Decompression through the real reader (page-cached file, one thread).
                    var prefix = Path.Combine(dir, "c");
                    using (var w = new TensorBundleWriter(prefix, new TensorBundleWriterOptions { Compression = all, FlushToDisk = false }))
                    {
                        for (var i = 0; i < tensors.Count; i++)
                        {
                            var width = DTypes.GetElementSize(tensors[i].DType);
                            w.Add($"t{i:D5}", tensors[i].DType, new TensorShape(tensors[i].Bytes.Length / width), tensors[i].Bytes, 0);
                        }
                        w.Finish();
                    }
                    using var reader = TensorBundleReader.Open(prefix);
                    var buffers = reader.Entries.Select(e => new byte[e.Size]).ToArray();
                    for (var r = 0; r < repeats + 1; r++)
                    {
                        var t = Time(() =>
                        {
                            for (var i = 0; i < reader.Entries.Count; i++) reader.ReadTensor(reader.Entries[i], buffers[i]);
                        });
                        if (r > 0) decompress1 = Math.Min(decompress1, t);   // first pass warms the page cache
                    }
                }
                finally
                {
                    if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
                }
                // A compressed save beats a plain one while raw/B > t_compress + stored/B, i.e. B < (raw - stored) / t_compress.
                var saved = raw - stored;
                Emit(new
                {
                    name = "lz4",
                    set = name,
                    shuffle,
                    tensors = tensors.Count,
                    raw_bytes = raw,
                    stored_bytes = stored,
                    ratio = Math.Round(raw / (double)stored, 4),
                    compress_gbps_per_core = Math.Round(raw / compress1 / 1e9, 3),
                    compress_gbps_all_cores = Math.Round(raw / compressAll / 1e9, 3),
                    decompress_gbps_per_core = Math.Round(raw / decompress1 / 1e9, 3),
                    cores = Environment.ProcessorCount,
                    break_even_disk_gbps = Math.Round(Math.Max(0, saved) / compressAll / 1e9, 3),
                });
            }
        return 0;
    }

    private static long CompressAll(List<(DType DType, byte[] Bytes)> tensors, BundleCompressionOptions options)
    {
        // Same code path as the writer, minus the file: stored size of every tensor (plain when it does not shrink).
        long stored = 0;
        var dir = Path.Combine(Path.GetTempPath(), $"lz4c-{Guid.NewGuid():N}");
        try
        {
            using var w = new TensorBundleWriter(Path.Combine(dir, "c"), new TensorBundleWriterOptions { Compression = options, FlushToDisk = false });
            for (var i = 0; i < tensors.Count; i++)
            {
                var width = DTypes.GetElementSize(tensors[i].DType);
                stored += w.Add($"t{i:D5}", tensors[i].DType, new TensorShape(tensors[i].Bytes.Length / width), tensors[i].Bytes, 0).StoredSize;
            }
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
        return stored;
    }

    private static double Time(Action action)
    {
        var clock = Stopwatch.StartNew();
        action();
        return clock.Elapsed.TotalSeconds;
    }

    private static string? FindCorpus()
    {
        for (var d = new DirectoryInfo(Directory.GetCurrentDirectory()); d is not null; d = d.Parent)
        {
            var candidate = Path.Combine(d.FullName, "shared", "testdata", "tf-checkpoints");
            if (Directory.Exists(candidate)) return candidate;
        }
        return Environment.GetEnvironmentVariable("CKPT_TF_CORPUS");
    }

    /// <summary>Every fixed-size tensor of at least 1 KiB in every TF-written checkpoint of the corpus.</summary>
    private static List<(DType, byte[])> CorpusTensors(string root)
    {
        var result = new List<(DType, byte[])>();
        foreach (var index in Directory.EnumerateFiles(root, "*.index", SearchOption.AllDirectories))
        {
            try
            {
                using var reader = TensorBundleReader.Open(index[..^".index".Length]);
                foreach (var e in reader.EntriesInDataOrder)
                {
                    if (!DTypes.IsFixedSize(e.DType) || e.IsSliceEntry || e.Size < 1024 || e.Size > 256 << 20) continue;
                    var bytes = new byte[e.Size];
                    reader.ReadTensor(e, bytes);
                    result.Add((e.DType, bytes));
                }
            }
            catch (Exception ex) when (ex is CheckpointFormatException or IOException)
            {
                // SavedModel variables and legacy formats the bundle reader refuses are skipped.
            }
        }
        return result;
    }

    /// <summary>The demo's model (MLP 8 → 256 → 256 → 1) after 300 Adam steps: weights, biases and both moments.</summary>
    private static List<(DType, byte[])> DemoWeights()
    {
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = Mlp.CreateSequential(acc, 8, [256, 256], 1, Activation.Tanh, seed: 2026);
        using var adam = new Adam(acc, learningRate: 0.002f);
        using var trainer = new MlpTrainer(model.DenseLayers, adam, new RegressionTask(8, 1, 64, seed: 2026));
        for (var i = 0; i < 300; i++) trainer.TrainStep();
        var result = new List<(DType, byte[])>();
        foreach (var v in model.DenseLayers.SelectMany(l => new[] { l.Kernel!, l.Bias! }))
        {
            result.Add((v.DType, v.ReadBytes()));
            foreach (var slot in adam.GetSlots(v).Values) result.Add((slot.DType, slot.ReadBytes()));
        }
        return result;
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;

namespace CheckpointGpu.Benchmarks.EndToEnd;

/// <summary>
/// <c>e2e [--layout default|transformer|many-small] [--gib N] [--params 1B] [--dtype float32|bf16|fp16] [--no-moments]
/// --device cpu|opencl|ilgpu-cpu|cuda|ilgpu-opencl [--dir D] [--repeats 3] [--no-torch] [--no-sim] [--sweep] [--core-only] [--restore-crc-only]
/// [--save-only [--zeros]]</c>: durable
/// save/restore throughput of the pipeline against fio (the limit), a naive FileStream baseline and torch; CRC
/// cost; peak RSS; and a training-loop simulation per snapshot policy. One JSON line per measurement.
/// </summary>
public static class EndToEndBenchmark
{
    private const double GB = 1e9;
    private static string s_device = "cpu";

    public static async Task<int> RunAsync(string[] args)
    {
        var gib = double.Parse(Arg(args, "--gib") ?? "1", CultureInfo.InvariantCulture);
        s_device = (Arg(args, "--device") ?? "cpu").ToLowerInvariant();
        var dir = Path.GetFullPath(Arg(args, "--dir") ?? Path.Combine(Directory.GetCurrentDirectory(), "e2e-bench"));
        var repeats = int.Parse(Arg(args, "--repeats") ?? "3", CultureInfo.InvariantCulture);
        var noTorch = args.Contains("--no-torch");
        var noSim = args.Contains("--no-sim");
        Directory.CreateDirectory(dir);
        var kind = DeviceKinds.Parse(s_device);
        using var acc = Accelerator.Create(kind);
        var layout = (Arg(args, "--layout") ?? "default").ToLowerInvariant();
        s_specs = layout switch
        {
            "default" => ModelLayouts.Default((long)(gib * (1L << 30))),
            "transformer" => ModelLayouts.Transformer(ModelLayouts.ParseCount(Arg(args, "--params") ?? "1B"),
                ModelLayouts.ParseDType(Arg(args, "--dtype") ?? "float32"), moments: !args.Contains("--no-moments")),
            "many-small" => ModelLayouts.ManySmall(),
            _ => throw new ArgumentException($"--layout {layout}: expected default, transformer or many-small."),
        };
        var sizes = s_specs.Select(t => t.Bytes).ToArray();
        var total = sizes.Sum();
        var dtypes = string.Join("+", s_specs.Select(t => DTypes.GetName(t.DType)).Distinct());
        var parameters = ModelLayouts.ParameterCount(s_specs);
        Info($"device {acc}; layout {layout}: {sizes.Length} tensors ({dtypes}), {parameters:N0} parameters, {total} bytes; dir {dir}; drop_caches {(CanDropCaches() ? "yes" : "no (O_DIRECT reads only)")}");
        var buffers = Allocate(acc, sizes);
        var rssWithModel = CurrentRss();
        try
        {
            if (args.Contains("--sweep")) { await SweepAsync(acc, buffers, sizes, dir); return 0; }
            if (args.Contains("--restore-sweep")) { await RestoreSweepAsync(acc, buffers, sizes, dir, repeats); return 0; }
            if (args.Contains("--restore-loop"))
            {
                await RestoreLoopAsync(acc, buffers, sizes, total, dir, repeats, args.Contains("--no-crc"),
                    int.Parse(Arg(args, "--readers") ?? CheckpointPipelineOptions.DefaultReaderCount.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture));
                return 0;
            }
            if (args.Contains("--restore-crc-only")) { await RestoreCrcOnlyAsync(acc, buffers, sizes, total, dir, repeats); return 0; }
            if (args.Contains("--core-only")) { await CoreOnlyAsync(acc, buffers, total, dir, repeats, Arg(args, "--gib") ?? "1"); return 0; }
            if (args.Contains("--save-only")) { await SaveOnlyAsync(acc, buffers, sizes, dir, repeats, args.Contains("--zeros")); return 0; }

            // ---------------------------------------------------------------- the limit: fio
            var fioFile = Path.Combine(dir, "fio.dat");
            var fioW = new List<double>(); var fioR = new List<double>();
            // The same fio jobs from huge-page buffers: fio's default (malloc) buffers are 4 KiB pages, so each O_DIRECT
            // request carries at most max_segments (254 on this VM's virtio disk) runs, ~1 MiB, and fio's figure swings
            // with how contiguous its buffer happens to be; huge pages give the disk's real limit.
            var fioWH = new List<double>(); var fioRH = new List<double>();
            var fioWriteArgs = $"--name=seqwrite --filename={fioFile} --rw=write --bs=8M --size={total} --direct=1 --ioengine=psync --end_fsync=1 --numjobs=1";
            var fioReadArgs = $"--name=seqread --filename={fioFile} --rw=read --bs=8M --size={total} --direct=1 --ioengine=libaio --iodepth=2 --numjobs=1";
            for (var i = 0; i < repeats; i++)
            {
                File.Delete(fioFile);
                fioW.Add(Fio(fioWriteArgs, total, "write"));
                DropCaches();
                fioR.Add(Fio(fioReadArgs, total, "read"));
                File.Delete(fioFile);
                if (FioHugePages(fioWriteArgs, total, "write") is { } wh) fioWH.Add(wh);
                DropCaches();
                if (FioHugePages(fioReadArgs, total, "read") is { } rh) fioRH.Add(rh);
            }
            File.Delete(fioFile);
            Emit("fio_write_odirect_fsync", total, Median(fioW));
            Emit("fio_read_odirect", total, Median(fioR));
            if (fioWH.Count > 0) Emit("fio_write_odirect_fsync_hugepages", total, Median(fioWH));
            if (fioRH.Count > 0) Emit("fio_read_odirect_hugepages", total, Median(fioRH));

            // ---------------------------------------------------------------- our save: first and steady state
            double firstSave, steadySave, syncSave, noCrcSave, restore, restoreCrcCost = double.NaN;
            var steady = new List<double>(); var syncTimes = new List<double>();
            long ringBytes, restorePeakExtra = 0;
            var restorePairedRatio = double.NaN;
            double? restorePairedHugeRatio = null;
            {
                ResetPeakRss();
                var rssBefore = CurrentRss();
                await using var pipeline = new CheckpointPipeline(acc);
                ringBytes = pipeline.RingSizeInBytes;
                var plan = Plan(buffers, sizes);
                var prefix = Path.Combine(dir, "ckpt-first");
                firstSave = await TimedSaveAsync(pipeline, prefix, plan);
                Emit("save_first", total, firstSave, extra: new() { ["peak_extra_rss_bytes"] = PeakRss() - rssBefore, ["ring_bytes"] = ringBytes });
                BundleCommit.DeleteCheckpoint(prefix);
                // The synchronous save (Checkpoint.Write: the pipeline's save, waited for) of a model whose variables hold the
                // same bytes, interleaved with the asynchronous one: same bytes, same minutes (the disk drifts, and on this VM
                // all-zero data is not written at the speed of random data), so the two ratios compare like with like.
                var syncRoot = new AutoTrackable();
                var syncVariables = sizes.Select((s, i) => Variable.Create(syncRoot, $"t{i}", acc, s_specs[i].DType, s_specs[i].Shape)).ToArray();
                long peakExtra = 0;
                try
                {
                    for (var i = 0; i < syncVariables.Length; i++) acc.DefaultStream.EnqueueCopy(buffers[i].AsView(), syncVariables[i].Buffer.AsView());
                    await acc.DefaultStream.SynchronizeAsync();
                    using var sync = new Checkpoint(("model", syncRoot)) { Log = null };
                    sync.Write(Path.Combine(dir, "sync-warm"));
                    BundleCommit.DeleteCheckpoint(Path.Combine(dir, "sync-warm"));
                    for (var i = 0; i < repeats; i++)
                    {
                        ResetPeakRss();
                        var before = CurrentRss();
                        prefix = Path.Combine(dir, $"ckpt-{i}");
                        steady.Add(await TimedSaveAsync(pipeline, prefix, plan));
                        peakExtra = Math.Max(peakExtra, PeakRss() - before);
                        if (i < repeats - 1) BundleCommit.DeleteCheckpoint(prefix);
                        var syncPrefix = Path.Combine(dir, $"sync-{i}");
                        var sw = Stopwatch.StartNew();
                        sync.Write(syncPrefix);
                        syncTimes.Add(sw.Elapsed.TotalSeconds);
                        BundleCommit.DeleteCheckpoint(syncPrefix);
                    }
                }
                finally
                {
                    foreach (var v in syncVariables) v.Dispose();
                }
                steadySave = Median(steady);
                syncSave = Median(syncTimes);
                Emit("save_sync", total, syncSave);
                Emit("save_steady", total, steadySave, extra: new() { ["peak_extra_rss_bytes"] = peakExtra, ["ring_bytes"] = ringBytes,
                    ["stream_seconds_last"] = s_lastStreamSeconds, ["commit_seconds_last"] = steady[^1] - s_lastStreamSeconds });

                // ---- restore (page cache dropped) into the model's buffers
                var restores = new List<double>(); long restorePeak = 0;
                var restoreCpu = new List<double>();
                var self = Process.GetCurrentProcess();
                // This VM's disk flips between two read speeds (~0.8 and ~1.5 GB/s) from one second to the next, so each
                // restore is also paired with fio reading the checkpoint's own data file, cold, just before it.
                var pairedRatios = new List<double>(); var pairedFio = new List<double>();
                var pairedHugeRatios = new List<double>(); var pairedFioHuge = new List<double>();
                var ckptData = BundleNaming.DataFile(prefix, 0, 1);
                var ckptDataLength = new FileInfo(ckptData).Length;
                for (var i = 0; i < repeats; i++)
                {
                    DropCaches();
                    var fioPaired = FioReadFile(ckptData);
                    pairedFio.Add(fioPaired);
                    DropCaches();
                    if (FioReadFileHugePages(ckptData) is { } fioHuge) pairedFioHuge.Add(fioHuge);
                    DropCaches();
                    ResetPeakRss();
                    var before = CurrentRss();
                    self.Refresh();
                    var cpu0 = self.TotalProcessorTime;
                    var sw = Stopwatch.StartNew();
                    await using (var session = pipeline.OpenRestore(prefix))
                        await session.RestoreAsync(buffers.Select((b, j) => new RestoreTarget(Key(j), b.AsView())).ToArray());
                    await acc.SynchronizeAsync();
                    restores.Add(sw.Elapsed.TotalSeconds);
                    pairedRatios.Add(fioPaired / sw.Elapsed.TotalSeconds);
                    if (pairedFioHuge.Count == i + 1) pairedHugeRatios.Add(pairedFioHuge[i] / sw.Elapsed.TotalSeconds);
                    self.Refresh();
                    restoreCpu.Add((self.TotalProcessorTime - cpu0).TotalSeconds);
                    restorePeak = Math.Max(restorePeak, PeakRss() - before);
                }
                restore = Median(restores);
                // CPU seconds of the whole process per restore (user + system, all threads) and the share of the machine's
                // cores that is: near 1.0 the restore is CPU-bound, whatever the disk could give.
                Emit("restore_cold", total, restore, extra: new() { ["peak_extra_rss_bytes"] = restorePeak, ["cpu_seconds"] = Math.Round(Median(restoreCpu), 3),
                    ["cpu_utilization"] = Math.Round(Median(restoreCpu) / (restore * Environment.ProcessorCount), 3),
                    ["paired_fio_read_gbps"] = Math.Round(ckptDataLength / Median(pairedFio) / GB, 3), ["paired_ratios"] = pairedRatios.Select(r => Math.Round(r, 3)).ToArray(),
                    ["paired_fio_read_hugepages_gbps"] = pairedFioHuge.Count > 0 ? Math.Round(ckptDataLength / Median(pairedFioHuge) / GB, 3) : "unavailable",
                    ["paired_hugepages_ratios"] = pairedHugeRatios.Select(r => Math.Round(r, 3)).ToArray() });
                restorePairedRatio = Median(pairedRatios);
                if (pairedHugeRatios.Count == repeats) restorePairedHugeRatio = Median(pairedHugeRatios);
                restorePeakExtra = restorePeak;
                restoreCrcCost = await RestoreCrcCostAsync(acc, buffers, prefix, repeats, total);
                BundleCommit.DeleteCheckpoint(prefix);
                // Per repeat, for plots: our save and restore next to fio's write and read of the same bytes.
                for (var i = 0; i < repeats; i++)
                    Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                    {
                        ["name"] = "run", ["run"] = i, ["save_gbps"] = Math.Round(total / steady[i] / GB, 4), ["sync_save_gbps"] = Math.Round(total / syncTimes[i] / GB, 4), ["fio_write_gbps"] = Math.Round(total / fioW[i] / GB, 4),
                        ["restore_gbps"] = Math.Round(total / restores[i] / GB, 4), ["fio_read_gbps"] = Math.Round(total / fioR[i] / GB, 4),
                    }));
            }
            // ---- through the Checkpoint API: into a built model, restore-on-create, and a restarted process's first step
            var core = await CoreRestoreBenchmark.RunAsync(acc, buffers, s_specs, dir, repeats, Arg(args, "--gib") ?? "1", s_device,
                DropCaches, ResetPeakRss, CurrentRss, PeakRss);
            Emit("restore_core_built", total, core.Built, extra: new() { ["peak_extra_rss_bytes"] = core.BuiltPeakExtra });
            Emit("restore_core_on_create", total, core.OnCreate, extra: new() { ["peak_extra_rss_bytes"] = core.OnCreatePeakExtra, ["peak_extra_rss_beyond_model_bytes"] = core.OnCreatePeakExtra - total,
                ["restore_call_seconds"] = core.OnCreateRestoreCall, ["build_seconds"] = core.OnCreateBuild, ["wait_seconds"] = core.OnCreateWait });
            Emit("model_build", total, core.ModelBuild);
            Emit("restore_core_build_then_restore", total, core.BuildThenRestore, extra: new() { ["build_seconds"] = core.BuildThenRestoreBuild });
            Emit("first_step_after_restart", total, core.FirstStep, extra: new() { ["restore_or_initialize_seconds"] = core.FirstStepRestore });
            // ---- one traced save (--trace): device copy, checksum and write per staging slot, one JSON line per stage
            if (args.Contains("--trace")) await TraceOneSaveAsync(acc, buffers, sizes, dir);
            // ---- CRC cost: the same pipeline without checksums
            {
                await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { ComputeChecksums = false });
                var plan = Plan(buffers, sizes);
                await TimedSaveAsync(pipeline, Path.Combine(dir, "nocrc-warm"), plan);
                BundleCommit.DeleteCheckpoint(Path.Combine(dir, "nocrc-warm"));
                var t = new List<double>();
                for (var i = 0; i < repeats; i++)
                {
                    var p = Path.Combine(dir, $"nocrc-{i}");
                    t.Add(await TimedSaveAsync(pipeline, p, plan));
                    BundleCommit.DeleteCheckpoint(p);
                }
                noCrcSave = Median(t);
                Emit("save_steady_no_crc", total, noCrcSave, extra: new() { ["crc_cost_fraction"] = 1 - (noCrcSave / steadySave) });
            }
            // ---- CRC alone (single thread over the bytes, the work the checksum stage does)
            {
                var buf = new byte[64 << 20];
                Random.Shared.NextBytes(buf);
                var sw = Stopwatch.StartNew();
                var crc = 0u;
                for (long done = 0; done < total; done += buf.Length) crc = MaskedCrc32C.Extend(crc, buf.AsSpan(0, (int)Math.Min(buf.Length, total - done)));
                Emit("crc32c_single_thread", total, sw.Elapsed.TotalSeconds, extra: new() { ["crc"] = crc });
            }
            // ---- naive baseline: whole tensor → managed array → FileStream.Write, Flush(true)
            double naive;
            {
                var t = new List<double>();
                for (var i = 0; i < repeats; i++)
                {
                    var path = Path.Combine(dir, "naive.bin");
                    ResetPeakRss();
                    var sw = Stopwatch.StartNew();
                    using (var fs = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
                    {
                        for (var j = 0; j < buffers.Length; j++)
                        {
                            var arr = new byte[sizes[j]];
                            acc.DefaultStream.EnqueueCopyToHost(buffers[j].AsView(), (Memory<byte>)arr);
                            await acc.DefaultStream.SynchronizeAsync();
                            fs.Write(arr);
                        }
                        fs.Flush(flushToDisk: true);
                    }
                    t.Add(sw.Elapsed.TotalSeconds);
                    File.Delete(path);
                }
                naive = Median(t);
                Emit("naive_filestream_save", total, naive);
            }
            // ---- device→host copy time of the whole model (the floor for full-snapshot blocking)
            var d2h = await D2HTimeAsync(acc, buffers, sizes, total);
            Emit("d2h_copy_model", total, d2h);

            // ---- torch
            (double Save, double Load)? torch = noTorch ? null : Torch(sizes, dir, repeats);
            if (torch is { } tt)
            {
                Emit("torch_save_fsync", total, tt.Save);
                Emit("torch_load_cold", total, tt.Load);
            }

            // ---- training-loop simulation
            Dictionary<string, (double Blocked, double Inflation)> sim = [];
            if (!noSim) sim = await SimulateAsync(acc, buffers, sizes, dir, steadySave);

            // ---- ratios vs targets
            var ratios = new Dictionary<string, object?>
            {
                ["save_vs_fio_write"] = (total / steadySave) / (total / Median(fioW)),
                ["sync_save_vs_fio_write"] = (total / syncSave) / (total / Median(fioW)),
                ["save_first_vs_fio_write"] = (total / firstSave) / (total / Median(fioW)),
                ["restore_vs_fio_read"] = (total / restore) / (total / Median(fioR)),
                // Median over repeats of (fio reading the checkpoint's data file cold) / (our cold restore right after it).
                ["restore_vs_fio_read_paired"] = restorePairedRatio,
                // Against fio from huge-page buffers (the disk's real limit; see fioWH above); null where hugetlb pages cannot be reserved.
                ["save_vs_fio_write_hugepages"] = fioWH.Count > 0 ? Median(fioWH) / steadySave : null,
                ["sync_save_vs_fio_write_hugepages"] = fioWH.Count > 0 ? Median(fioWH) / syncSave : null,
                ["restore_vs_fio_read_hugepages"] = fioRH.Count > 0 ? Median(fioRH) / restore : null,
                ["restore_vs_fio_read_hugepages_paired"] = restorePairedHugeRatio,
                ["save_vs_torch_save"] = torch is { } t2 ? t2.Save / steadySave : null,
                ["restore_vs_torch_load"] = torch is { } t3 ? t3.Load / restore : null,
                ["save_vs_naive"] = naive / steadySave,
                ["crc_cost_fraction"] = 1 - (noCrcSave / steadySave),
                ["restore_crc_cost_fraction"] = restoreCrcCost,
                ["restore_peak_extra_rss_bytes"] = restorePeakExtra,
                ["restore_core_built_vs_fio_read"] = Median(fioR) / core.Built,
                ["restore_on_create_vs_built"] = core.OnCreate / core.Built,
                // The alternative a user has: build the model (initializers), then restore into it; and the bare build.
                ["restore_on_create_vs_build_then_restore"] = core.OnCreate / core.BuildThenRestore,
                ["model_build_seconds"] = core.ModelBuild,
                // Beyond the model's own buffers, which restore-on-create allocates inside the measurement.
                ["restore_on_create_peak_extra_rss_bytes"] = core.OnCreatePeakExtra - total,
                ["first_step_after_restart_seconds"] = core.FirstStep,
                ["first_step_after_restart_vs_fio_read"] = core.FirstStep / Median(fioR),
                ["ring_bytes"] = ringBytes,
            };
            foreach (var (policy, v) in sim)
            {
                ratios[$"blocked_per_ckpt_{policy}_seconds"] = v.Blocked;
                ratios[$"step_inflation_{policy}"] = v.Inflation;
            }
            if (sim.TryGetValue("full_snapshot", out var full))
            {
                ratios["full_snapshot_blocked_vs_d2h"] = full.Blocked / d2h;
                ratios["full_snapshot_latency_vs_d2h"] = s_snapshotLatency["full_snapshot"] / d2h;
            }
            // Per-tensor overhead: the save's time beyond what fio needs for the same bytes, per tensor.
            ratios["save_overhead_per_tensor_us"] = (steadySave - Median(fioW)) / sizes.Length * 1e6;
            ratios["restore_overhead_per_tensor_us"] = (restore - Median(fioR)) / sizes.Length * 1e6;
            ratios["rss_with_model_bytes"] = rssWithModel;
            ratios["peak_rss_bytes"] = Math.Max(s_peakRssSeen, PeakRss());
            Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?> { ["name"] = "ratios", ["device"] = s_device, ["bytes"] = total,
                    ["layout"] = layout, ["tensors"] = sizes.Length, ["parameters"] = parameters, ["dtypes"] = dtypes }
                .Concat(ratios).ToDictionary()));
            return 0;
        }
        finally
        {
            foreach (var b in buffers) b.Dispose();
            foreach (var f in Directory.EnumerateFiles(dir)) File.Delete(f);
        }
    }

    // ==================================================================== model

    /// <summary>float32 tensors of 4 KiB, 16 KiB, … 256 MiB (×4 each), repeated until <paramref name="total"/> bytes; the last one trimmed.</summary>
    /// <summary>
    /// Restore CRC cost: cold restores with and without checksums, interleaved in ABBA order (the disk and the machine's
    /// load drift within minutes; ABBA cancels a linear drift), at least 6 pairs; the cost is the median of the pairs'
    /// fractions (each pair ran back to back), reported next to the ratio of the medians.
    /// </summary>
    private static async Task<double> RestoreCrcCostAsync(Accelerator acc, DeviceBuffer[] buffers, string prefix, int repeats, long total)
    {
        // Two pipelines made alike (fresh, default options), differing only in checksumming.
        await using var pipeline = new CheckpointPipeline(acc);
        await using var noCrc = new CheckpointPipeline(acc, new CheckpointPipelineOptions { ComputeChecksums = false });
        var with = new List<double>(); var without = new List<double>();
        var pairs = Math.Max(6, 2 * repeats);
        for (var i = 0; i < pairs; i++)
        {
            var order = i % 2 == 0 ? new[] { (pipeline, with), (noCrc, without) } : new[] { (noCrc, without), (pipeline, with) };
            foreach (var (p, list) in order)
            {
                DropCaches();
                var sw = Stopwatch.StartNew();
                await using (var session = p.OpenRestore(prefix))
                    await session.RestoreAsync(buffers.Select((b, j) => new RestoreTarget(Key(j), b.AsView())).ToArray());
                await acc.SynchronizeAsync();
                list.Add(sw.Elapsed.TotalSeconds);
            }
        }
        var cost = Median(with.Zip(without, (w, o) => 1 - (o / w)).ToList());
        Emit("restore_cold_no_crc", total, Median(without), extra: new() { ["with_crc_seconds"] = Median(with), ["crc_cost_fraction"] = cost,
            ["crc_cost_fraction_of_medians"] = 1 - (Median(without) / Median(with)), ["pairs"] = pairs,
            ["with_crc_all_seconds"] = with.Select(x => Math.Round(x, 4)).ToArray(), ["without_crc_all_seconds"] = without.Select(x => Math.Round(x, 4)).ToArray() });
        return cost;
    }

    /// <summary>
    /// <c>--restore-crc-only</c>: one save, then only the restore CRC cost (<see cref="RestoreCrcCostAsync"/>) — a quick loop
    /// for the <c>restore_crc_cost_fraction</c> key.
    /// </summary>
    /// <summary>
    /// <c>--restore-loop</c>: one save, then <c>--repeats</c> cold restores into the built model (page cache dropped before
    /// each), one JSON line per restore with its CPU time (user + system, whole process): a loop to profile the restore
    /// (e.g. under <c>perf record</c>) without fio or saves in the way. <c>--no-crc</c> turns checksumming off.
    /// </summary>
    private static async Task RestoreLoopAsync(Accelerator acc, DeviceBuffer[] buffers, long[] sizes, long total, string dir, int repeats, bool noCrc, int readers)
    {
        var prefix = Path.Combine(dir, "ckpt-loop");
        await using (var saver = new CheckpointPipeline(acc)) await TimedSaveAsync(saver, prefix, Plan(buffers, sizes));
        try
        {
            await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { ComputeChecksums = !noCrc, ReaderCount = readers });
            var self = Process.GetCurrentProcess();
            var dataFile = BundleNaming.DataFile(prefix, 0, 1);
            for (var i = 0; i < repeats; i++)
            {
                // fio reading the checkpoint's own data file, cold, right before: the limit of this very minute.
                DropCaches();
                var fio = FioReadFile(dataFile);
                DropCaches();
                var raw = await RawReadSecondsAsync(dataFile, 3);
                DropCaches();
                self.Refresh();
                var cpu0 = self.TotalProcessorTime;
                var user0 = self.UserProcessorTime;
                var sw = Stopwatch.StartNew();
                await using (var session = pipeline.OpenRestore(prefix))
                    await session.RestoreAsync(buffers.Select((b, j) => new RestoreTarget(Key(j), b.AsView())).ToArray());
                await acc.SynchronizeAsync();
                var wall = sw.Elapsed.TotalSeconds;
                self.Refresh();
                Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["name"] = "restore_loop", ["device"] = s_device, ["run"] = i, ["bytes"] = total, ["seconds"] = Math.Round(wall, 4),
                    ["gbps"] = Math.Round(total / wall / GB, 3), ["cpu_seconds"] = Math.Round((self.TotalProcessorTime - cpu0).TotalSeconds, 3),
                    ["user_seconds"] = Math.Round((self.UserProcessorTime - user0).TotalSeconds, 3), ["checksums"] = !noCrc,
                    ["fio_read_gbps"] = Math.Round(new FileInfo(dataFile).Length / fio / GB, 3), ["vs_fio_read"] = Math.Round(fio / wall, 3),
                    ["raw_read_gbps"] = Math.Round(new FileInfo(dataFile).Length / raw / GB, 3),
                }));
            }
        }
        finally
        {
            BundleCommit.DeleteCheckpoint(prefix);
        }
    }

    /// <summary>fio reading an existing file (a checkpoint's data file) once, O_DIRECT, 8 MiB blocks, 2 in flight, read-only: seconds.</summary>
    private static double FioReadFile(string path)
    {
        var length = new FileInfo(path).Length;
        return Fio(FioReadFileArgs(path, length), length, "read");
    }

    /// <summary>The same read from huge-page buffers (<see cref="FioHugePages"/>): seconds, or null where unavailable.</summary>
    private static double? FioReadFileHugePages(string path)
    {
        var length = new FileInfo(path).Length;
        return FioHugePages(FioReadFileArgs(path, length), length, "read");
    }

    private static string FioReadFileArgs(string path, long length) =>
        $"--name=ckptread --filename={path} --rw=read --bs=8M --size={length} --direct=1 --ioengine=libaio --iodepth=2 --numjobs=1 --readonly";

    /// <summary>
    /// fio with its IO buffers in huge pages (<c>--mem=shmhuge</c>): reserves 16 hugetlb pages (32 MiB: 2 × 8 MiB buffers
    /// and fio's alignment) for the run and gives them back after. Seconds, or null when the pages cannot be reserved
    /// (not root, no hugetlb) or fio fails.
    /// </summary>
    private static double? FioHugePages(string args, long bytes, string kind)
    {
        const string knob = "/proc/sys/vm/nr_hugepages";
        string? before = null;
        try
        {
            before = File.ReadAllText(knob).Trim();
            var had = int.Parse(before, CultureInfo.InvariantCulture);
            File.WriteAllText(knob, (had + 16).ToString(CultureInfo.InvariantCulture));
            if (int.Parse(File.ReadAllText(knob).Trim(), CultureInfo.InvariantCulture) < had + 16) return null;
            return Fio(args + " --mem=shmhuge", bytes, kind);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException or JsonException or ArgumentException)
        {
            Info($"fio with huge pages unavailable: {ex.Message}");
            return null;
        }
        finally
        {
            if (before is not null)
                try { File.WriteAllText(knob, before); }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
        }
    }

    /// <summary>The storage seam's positional O_DIRECT reads alone: <paramref name="readers"/> loops of 8 MiB reads into page-locked memory, in file order: seconds.</summary>
    private static async Task<double> RawReadSecondsAsync(string path, int readers)
    {
        using var file = LocalShardStorage.Instance.OpenForRead(path, preferDirectIO: true);
        var length = file.Length;
        const int chunk = 8 << 20;
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var pinned = acc.AllocatePinned((long)chunk * readers);
        long next = 0;
        var sw = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, readers).Select(async r =>
        {
            var memory = pinned.GetMemory((long)r * chunk, chunk);
            for (var offset = Interlocked.Add(ref next, chunk) - chunk; offset < length; offset = Interlocked.Add(ref next, chunk) - chunk)
                await file.ReadAsync(memory, offset, CancellationToken.None);
        }));
        return sw.Elapsed.TotalSeconds;
    }

    private static async Task RestoreCrcOnlyAsync(Accelerator acc, DeviceBuffer[] buffers, long[] sizes, long total, string dir, int repeats)
    {
        await using var pipeline = new CheckpointPipeline(acc);
        var prefix = Path.Combine(dir, "ckpt-crc");
        await TimedSaveAsync(pipeline, prefix, Plan(buffers, sizes));
        try
        {
            var cost = await RestoreCrcCostAsync(acc, buffers, prefix, repeats, total);
            Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?> { ["name"] = "crc_ratios", ["device"] = s_device, ["bytes"] = total, ["restore_crc_cost_fraction"] = cost }));
        }
        finally
        {
            BundleCommit.DeleteCheckpoint(prefix);
        }
    }

    /// <summary>
    /// <c>--core-only</c>: only the restores through the Checkpoint API (built, build-then-restore, on-create, first step
    /// after a restart) and their <c>core_ratios</c> line — a quick loop for restore-on-create work (~20 s at 1 GiB).
    /// </summary>
    private static async Task CoreOnlyAsync(Accelerator acc, DeviceBuffer[] buffers, long total, string dir, int repeats, string gibArg)
    {
        var core = await CoreRestoreBenchmark.RunAsync(acc, buffers, s_specs, dir, repeats, gibArg, s_device, DropCaches, ResetPeakRss, CurrentRss, PeakRss);
        Emit("restore_core_built", total, core.Built, extra: new() { ["peak_extra_rss_bytes"] = core.BuiltPeakExtra });
        Emit("restore_core_on_create", total, core.OnCreate, extra: new() { ["peak_extra_rss_bytes"] = core.OnCreatePeakExtra, ["peak_extra_rss_beyond_model_bytes"] = core.OnCreatePeakExtra - total,
            ["restore_call_seconds"] = core.OnCreateRestoreCall, ["build_seconds"] = core.OnCreateBuild, ["wait_seconds"] = core.OnCreateWait });
        Emit("model_build", total, core.ModelBuild);
        Emit("restore_core_build_then_restore", total, core.BuildThenRestore, extra: new() { ["build_seconds"] = core.BuildThenRestoreBuild });
        Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["name"] = "core_ratios", ["device"] = s_device, ["bytes"] = total,
            ["restore_on_create_vs_built"] = core.OnCreate / core.Built,
            ["restore_on_create_vs_build_then_restore"] = core.OnCreate / core.BuildThenRestore,
            ["model_build_seconds"] = core.ModelBuild,
            ["restore_on_create_peak_extra_rss_bytes"] = core.OnCreatePeakExtra - total,
            ["first_step_after_restart_seconds"] = core.FirstStep,
        }));
    }

    public static long[] ModelSizes(long total)
    {
        var sizes = new List<long>();
        long sum = 0;
        while (sum < total)
        {
            for (long s = 4096; s <= 256L << 20 && sum < total; s *= 4)
            {
                var n = Math.Min(s, total - sum) & ~3L;
                if (n == 0) { sum = total; break; }
                sizes.Add(n);
                sum += n;
            }
        }
        return [.. sizes];
    }

    private static DeviceBuffer[] Allocate(Accelerator acc, long[] sizes)
    {
        var pattern = new byte[4 << 20];
        Random.Shared.NextBytes(pattern);
        var buffers = new DeviceBuffer[sizes.Length];
        for (var i = 0; i < sizes.Length; i++)
        {
            buffers[i] = acc.Allocate(sizes[i]);
            for (long o = 0; o < sizes[i]; o += pattern.Length)
            {
                var n = (int)Math.Min(pattern.Length, sizes[i] - o);
                acc.DefaultStream.EnqueueCopyFromHost((ReadOnlyMemory<byte>)pattern.AsMemory(0, n), buffers[i].View(o, n));
            }
            pattern[i % pattern.Length] ^= 0x5A;
            acc.DefaultStream.Synchronize();
        }
        return buffers;
    }

    /// <summary>
    /// <c>--save-only</c>: durable saves of the same bytes, interleaved per round (the disk drifts): fio's O_DIRECT write,
    /// the pipeline's save (<c>QueueSave</c>, awaited), <c>Checkpoint.Write</c> (synchronous) and <c>Checkpoint.WriteAsync</c>
    /// (awaited) of a model whose variables hold the model buffers' bytes (<c>--zeros</c>: all-zero variables, while the
    /// pipeline save keeps the random bytes). One JSON line per round and the medians; per save on standard error the
    /// thread pool's size and queue, and the stage sums of the save trace.
    /// </summary>
    private static async Task SaveOnlyAsync(Accelerator acc, DeviceBuffer[] buffers, long[] sizes, string dir, int repeats, bool zeros)
    {
        var total = sizes.Sum();
        var root = new AutoTrackable();
        var variables = sizes.Select((s, i) => Variable.Create(root, $"t{i}", acc, DType.Float, new TensorShape(s / 4), VariableInitializer.Zeros)).ToArray();
        try
        {
            if (!zeros)
                for (var i = 0; i < variables.Length; i++) acc.DefaultStream.EnqueueCopy(buffers[i].AsView(), variables[i].Buffer.AsView());
            await acc.DefaultStream.SynchronizeAsync();
            var events = new System.Collections.Concurrent.ConcurrentQueue<SaveTraceEvent>();
            var io = new CheckpointPipelineOptions { SaveTrace = events.Enqueue };
            await using var pipeline = new CheckpointPipeline(acc, io);
            var plan = Plan(buffers, sizes);
            using var ckpt = new Checkpoint(("model", root)) { Log = null };
            var ckptOptions = new CheckpointOptions { IO = io };
            string Summary()
            {
                var list = events.ToArray();
                events.Clear();
                double Sum(SaveTraceStage st) => list.Where(e => e.Stage == st).Sum(e => (e.EndTimestamp - e.StartTimestamp) * 1.0 / Stopwatch.Frequency);
                var span = list.Length == 0 ? 0 : (list.Max(e => e.EndTimestamp) - list.Min(e => e.StartTimestamp)) * 1.0 / Stopwatch.Frequency;
                return $"span {span:0.000} s, copy(enqueue->seen) {Sum(SaveTraceStage.DeviceCopy):0.000} s, crc {Sum(SaveTraceStage.Checksum):0.000} s, write {Sum(SaveTraceStage.Write):0.000} s over {list.Count(e => e.Stage == SaveTraceStage.Write)} slots";
            }
            var fioFile = Path.Combine(dir, "fio.dat");
            var names = new[] { "fio", "pipeline", "sync", "async" };
            var times = names.ToDictionary(n => n, _ => new List<double>());
            // Warm-up: first-save costs (ring faults, JIT) out of the rounds.
            await TimedSaveAsync(pipeline, Path.Combine(dir, "warm-p"), plan);
            BundleCommit.DeleteCheckpoint(Path.Combine(dir, "warm-p"));
            ckpt.Write(Path.Combine(dir, "warm-s"), ckptOptions);
            BundleCommit.DeleteCheckpoint(Path.Combine(dir, "warm-s"));
            events.Clear();
            for (var r = 0; r < repeats; r++)
            {
                File.Delete(fioFile);
                times["fio"].Add(Fio($"--name=seqwrite --filename={fioFile} --rw=write --bs=8M --size={total} --direct=1 --ioengine=psync --end_fsync=1 --numjobs=1", total, "write"));
                File.Delete(fioFile);
                var ps = PoolSampler.Start();
                times["pipeline"].Add(await TimedSaveAsync(pipeline, Path.Combine(dir, "p"), plan));
                Info($"pipeline save: {ps.Stop()}; {Summary()}");
                BundleCommit.DeleteCheckpoint(Path.Combine(dir, "p"));
                var sampler = PoolSampler.Start();
                var sw = Stopwatch.StartNew();
                ckpt.Write(Path.Combine(dir, "s"), ckptOptions);
                times["sync"].Add(sw.Elapsed.TotalSeconds);
                Info($"sync save on {(Thread.CurrentThread.IsThreadPoolThread ? "a pool thread" : "a dedicated thread")}: {sampler.Stop()}; {Summary()}");
                BundleCommit.DeleteCheckpoint(Path.Combine(dir, "s"));
                sw.Restart();
                await (await ckpt.WriteAsync(Path.Combine(dir, "a"), ckptOptions)).Completion;
                times["async"].Add(sw.Elapsed.TotalSeconds);
                Info($"async: {Summary()}");
                BundleCommit.DeleteCheckpoint(Path.Combine(dir, "a"));
                Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object> { ["name"] = "save_round", ["round"] = r }
                    .Concat(names.Select(n => KeyValuePair.Create(n + "_seconds", (object)Math.Round(times[n][^1], 4)))).ToDictionary()));
            }
            var fio = Median(times["fio"]);
            Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object> { ["name"] = "save_only", ["device"] = s_device, ["bytes"] = total,
                ["fio_write_gbps"] = Math.Round(total / fio / GB, 4),
                ["save_vs_fio_write"] = fio / Median(times["pipeline"]),
                ["sync_save_vs_fio_write"] = fio / Median(times["sync"]),
                ["async_checkpoint_save_vs_fio_write"] = fio / Median(times["async"]) }));
        }
        finally
        {
            foreach (var v in variables) v.Dispose();
        }
    }

    /// <summary>Samples the thread pool every millisecond on a thread of its own (thread count, queued items).</summary>
    private sealed class PoolSampler
    {
        private volatile bool _stop;
        private readonly Thread _thread;
        private long _samples, _queuedSum, _queuedMax, _threadsMax, _threadsMin = long.MaxValue;

        private PoolSampler()
        {
            _thread = new Thread(() =>
            {
                while (!_stop)
                {
                    var q = ThreadPool.PendingWorkItemCount;
                    var t = ThreadPool.ThreadCount;
                    _samples++; _queuedSum += q; _queuedMax = Math.Max(_queuedMax, q);
                    _threadsMax = Math.Max(_threadsMax, t); _threadsMin = Math.Min(_threadsMin, t);
                    Thread.Sleep(1);
                }
            }) { IsBackground = true };
            _thread.Start();
        }

        public static PoolSampler Start() => new();

        public string Stop()
        {
            _stop = true;
            _thread.Join();
            return $"pool threads {_threadsMin}..{_threadsMax}, queued items mean {(double)_queuedSum / Math.Max(1, _samples):0.0} max {_queuedMax} ({_samples} samples)";
        }
    }

    private static TensorSpec[] s_specs = [];

    private static string Key(int i) => s_specs[i].Key;

    private static SavePlan Plan(DeviceBuffer[] buffers, long[] sizes) =>
        SavePlan.Create(buffers.Select((b, i) => new SaveItem(Key(i), s_specs[i].DType, s_specs[i].Shape, SaveSource.FromDevice(b.AsView())))
            .Append(new SaveItem(CheckpointKeys.ObjectGraph, DType.String, TensorShape.Scalar,
                SaveSource.FromEncoded(EncodedTensor.FromStrings([new byte[3000]])))).ToArray());

    private static double s_lastStreamSeconds;

    private static async Task TraceOneSaveAsync(Accelerator acc, DeviceBuffer[] buffers, long[] sizes, string dir)
    {
        var events = new System.Collections.Concurrent.ConcurrentQueue<SaveTraceEvent>();
        var tracing = false;
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SaveTrace = e => { if (Volatile.Read(ref tracing)) events.Enqueue(e); } });
        var prefix = Path.Combine(dir, "traced");
        await TimedSaveAsync(pipeline, prefix, Plan(buffers, sizes)); // warm-up, not traced
        BundleCommit.DeleteCheckpoint(prefix);
        Volatile.Write(ref tracing, true);
        var start = Stopwatch.GetTimestamp();
        var seconds = await TimedSaveAsync(pipeline, prefix, Plan(buffers, sizes));
        Volatile.Write(ref tracing, false);
        BundleCommit.DeleteCheckpoint(prefix);
        Emit("save_traced", sizes.Sum(), seconds, extra: new() { ["events"] = events.Count });
        double Ms(long ts) => Math.Round((ts - start) * 1000.0 / Stopwatch.Frequency, 3);
        foreach (var e in events.OrderBy(e => e.StartTimestamp))
            Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["name"] = "trace", ["stage"] = e.Stage switch { SaveTraceStage.DeviceCopy => "copy", SaveTraceStage.Checksum => "checksum", _ => "write" },
                ["slot"] = e.Slot, ["writer"] = e.Writer, ["shard"] = e.Shard, ["file_offset"] = e.FileOffset, ["bytes"] = e.LengthInBytes,
                ["start_ms"] = Ms(e.StartTimestamp), ["end_ms"] = Ms(e.EndTimestamp),
            }));
    }

    private static async Task<double> TimedSaveAsync(CheckpointPipeline pipeline, string prefix, SavePlan plan)
    {
        var sw = Stopwatch.StartNew();
        var h = pipeline.QueueSave(prefix, plan);
        await h.Completion;
        s_lastStreamSeconds = h.StreamDuration.TotalSeconds;
        return sw.Elapsed.TotalSeconds;
    }

    private static async Task<double> D2HTimeAsync(Accelerator acc, DeviceBuffer[] buffers, long[] sizes, long total)
    {
        // At most 1 GiB of pinned memory (reused in turn): a 12 GB model must not need 12 GB more.
        var capacity = Math.Min(total, Math.Max(1L << 30, sizes.Max()));
        using var host = acc.AllocatePinned(capacity);
        var t = new List<double>();
        for (var r = 0; r < 3; r++)
        {
            var sw = Stopwatch.StartNew();
            long off = 0;
            for (var i = 0; i < buffers.Length; i++)
            {
                if (off + sizes[i] > capacity) { await acc.DefaultStream.SynchronizeAsync(); off = 0; }
                acc.DefaultStream.EnqueueCopyToHost(buffers[i].AsView(), host, off);
                off += sizes[i];
            }
            await acc.DefaultStream.SynchronizeAsync();
            t.Add(sw.Elapsed.TotalSeconds);
        }
        return Median(t);
    }

    // ==================================================================== training loop

    /// <summary>
    /// A loop of steps: "compute" is device time the host waits for (a delay, as on a GPU), then each variable is
    /// updated in order (a device fill of its first 64 KiB), preceded by the policy's barrier. A checkpoint is
    /// requested every K steps; K is chosen so that the interval is about 2× the measured save time.
    /// Inflation = (loop time with checkpoints − without) / without; blocked = time spent waiting per checkpoint.
    /// </summary>
    private static async Task<Dictionary<string, (double Blocked, double Inflation)>> SimulateAsync(Accelerator acc, DeviceBuffer[] buffers, long[] sizes,
        string dir, double saveSeconds)
    {
        const double computeSeconds = 0.1;
        var k = Math.Max(5, (int)Math.Ceiling(2 * saveSeconds / computeSeconds));
        const int checkpoints = 3;
        var steps = k * checkpoints;
        var results = new Dictionary<string, (double, double)>();
        var baseline = await LoopAsync(null, null, steps, k, acc, buffers, sizes, dir, computeSeconds);
        Emit("loop_no_checkpoint", 0, baseline.Total, extra: new() { ["steps"] = steps, ["k"] = k });
        foreach (var policy in new[] { "sync", "bounded_ring", "full_snapshot", "write_barriers" })
        {
            var opts = policy switch
            {
                "full_snapshot" => new CheckpointPipelineOptions { SnapshotPolicy = SnapshotPolicy.FullHostSnapshot },
                "write_barriers" => new CheckpointPipelineOptions { SnapshotPolicy = SnapshotPolicy.WriteBarriers, CopyOnWriteBudgetInBytes = sizes.Sum() },
                _ => new CheckpointPipelineOptions(),
            };
            await using var pipeline = new CheckpointPipeline(acc, opts);
            // Warm-up save (first-save costs, arena allocation) outside the timed loop.
            await pipeline.QueueSave(Path.Combine(dir, "warm"), Plan(buffers, sizes)).Completion;
            BundleCommit.DeleteCheckpoint(Path.Combine(dir, "warm"));
            ResetPeakRss();
            var rss = CurrentRss();
            var r = await LoopAsync(pipeline, policy, steps, k, acc, buffers, sizes, dir, computeSeconds);
            var inflation = (r.Total - baseline.Total) / baseline.Total;
            var blocked = r.Blocked / checkpoints;
            results[policy] = (blocked, inflation);
            Emit($"loop_{policy}", (long)(sizes.Sum() * (double)checkpoints), r.Total,
                extra: new() { ["blocked_seconds"] = blocked, ["step_inflation"] = inflation, ["steps"] = steps, ["k"] = k, ["peak_extra_rss_bytes"] = PeakRss() - rss,
                    ["snapshot_latency_seconds"] = s_lastSnapshotLatency });
            s_snapshotLatency[policy] = s_lastSnapshotLatency;
        }
        return results;
    }

    private static double s_lastSnapshotLatency;
    private static readonly Dictionary<string, double> s_snapshotLatency = [];

    private static async Task<(double Total, double Blocked)> LoopAsync(CheckpointPipeline? pipeline, string? policy, int steps, int k, Accelerator acc,
        DeviceBuffer[] buffers, long[] sizes, string dir, double computeSeconds)
    {
        var stream = acc.CreateStream();
        var plan = Plan(buffers, sizes);
        var pending = new List<(SaveHandle H, string Prefix)>();
        var snapshotLatencies = new System.Collections.Concurrent.ConcurrentBag<double>();
        double blocked = 0;
        SaveHandle? current = null;
        var sw = Stopwatch.StartNew();
        for (var step = 1; step <= steps; step++)
        {
            await Task.Delay(TimeSpan.FromSeconds(computeSeconds)); // forward/backward on the device
            var b0 = Stopwatch.GetTimestamp();
            if (current is not null && policy is "bounded_ring" or "full_snapshot") { await current.Snapshotted; current = null; }
            blocked += Stopwatch.GetElapsedTime(b0).TotalSeconds;
            for (var i = 0; i < buffers.Length; i++)
            {
                if (policy == "write_barriers")
                {
                    var b = Stopwatch.GetTimestamp();
                    await pipeline!.WaitUntilStagedAsync(buffers[i]);
                    blocked += Stopwatch.GetElapsedTime(b).TotalSeconds;
                }
                stream.EnqueueFill(buffers[i].View(0, Math.Min(sizes[i], 65536)), (byte)step);
            }
            await stream.SynchronizeAsync();
            if (pipeline is not null && step % k == 0)
            {
                var prefix = Path.Combine(dir, $"loop-{step}");
                var b = Stopwatch.GetTimestamp();
                var h = pipeline.QueueSave(prefix, plan);
                var t0 = Stopwatch.GetTimestamp();
                _ = h.Snapshotted.ContinueWith(_ => snapshotLatencies.Add(Stopwatch.GetElapsedTime(t0).TotalSeconds), TaskScheduler.Default);
                if (policy == "sync") await h.Completion;
                blocked += Stopwatch.GetElapsedTime(b).TotalSeconds;
                current = h;
                pending.Add((h, prefix));
                // Keep disk bounded: delete checkpoints that are complete, except the newest.
                foreach (var (ph, pp) in pending.Where(p => p.H.Completion.IsCompleted && p.H != h).ToArray())
                {
                    BundleCommit.DeleteCheckpoint(pp);
                    pending.Remove((ph, pp));
                }
            }
        }
        var total = sw.Elapsed.TotalSeconds;
        foreach (var (h, p) in pending)
        {
            await h.Completion;
            BundleCommit.DeleteCheckpoint(p);
        }
        stream.Dispose();
        s_lastSnapshotLatency = snapshotLatencies.IsEmpty ? 0 : snapshotLatencies.Average();
        return (total, blocked);
    }

    // ==================================================================== defaults sweep

    private static async Task SweepAsync(Accelerator acc, DeviceBuffer[] buffers, long[] sizes, string dir)
    {
        var total = sizes.Sum();
        foreach (var (slot, count, writers) in new[] { (1 << 20, 8, 2), (2 << 20, 8, 2), (4 << 20, 8, 2), (8 << 20, 8, 1), (8 << 20, 8, 2), (8 << 20, 4, 2), (8 << 20, 8, 4), (16 << 20, 4, 2), (32 << 20, 4, 2) })
        {
            await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = slot, SlotCount = count, WriterCount = writers, ReaderCount = writers });
            var plan = Plan(buffers, sizes);
            await TimedSaveAsync(pipeline, Path.Combine(dir, "sw"), plan);
            BundleCommit.DeleteCheckpoint(Path.Combine(dir, "sw"));
            var t = new List<double>(); var rt = new List<double>();
            for (var i = 0; i < 3; i++)
            {
                t.Add(await TimedSaveAsync(pipeline, Path.Combine(dir, "sw"), plan));
                DropCaches();
                var sw = Stopwatch.StartNew();
                await using (var s = pipeline.OpenRestore(Path.Combine(dir, "sw")))
                    await s.RestoreAsync(buffers.Select((b, j) => new RestoreTarget(Key(j), b.AsView())).ToArray());
                rt.Add(sw.Elapsed.TotalSeconds);
                BundleCommit.DeleteCheckpoint(Path.Combine(dir, "sw"));
            }
            Emit($"sweep_save_slot{slot >> 20}M_x{count}_w{writers}", total, Median(t));
            Emit($"sweep_restore_slot{slot >> 20}M_x{count}_r{writers}", total, Median(rt));
        }
    }

    /// <summary>
    /// <c>--restore-sweep</c>: cold restores of one checkpoint under several ring shapes and reads in flight, interleaved
    /// with fio's O_DIRECT read of a file of the same size in every round (the disk drifts), one JSON line per config.
    /// </summary>
    private static async Task RestoreSweepAsync(Accelerator acc, DeviceBuffer[] buffers, long[] sizes, string dir, int repeats)
    {
        var total = sizes.Sum();
        var configs = new[] { (8 << 20, 8, 2), (8 << 20, 8, 3), (8 << 20, 16, 2), (8 << 20, 16, 3), (16 << 20, 8, 2), (4 << 20, 16, 4) };
        var prefix = Path.Combine(dir, "rsw");
        await using (var p = new CheckpointPipeline(acc)) await TimedSaveAsync(p, prefix, Plan(buffers, sizes));
        var fioFile = Path.Combine(dir, "fio.dat");
        Fio($"--name=seqwrite --filename={fioFile} --rw=write --bs=8M --size={total} --direct=1 --ioengine=psync --end_fsync=1 --numjobs=1", total, "write");
        var times = configs.ToDictionary(c => c, _ => new List<double>());
        var fio = new List<double>();
        for (var r = 0; r < repeats; r++)
        {
            DropCaches();
            fio.Add(Fio($"--name=seqread --filename={fioFile} --rw=read --bs=8M --size={total} --direct=1 --ioengine=libaio --iodepth=2 --numjobs=1", total, "read"));
            foreach (var c in configs)
            {
                await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = c.Item1, SlotCount = c.Item2, ReaderCount = c.Item3 });
                DropCaches();
                var sw = Stopwatch.StartNew();
                await using (var s = pipeline.OpenRestore(prefix))
                    await s.RestoreAsync(buffers.Select((b, j) => new RestoreTarget(Key(j), b.AsView())).ToArray());
                times[c].Add(sw.Elapsed.TotalSeconds);
            }
        }
        File.Delete(fioFile);
        BundleCommit.DeleteCheckpoint(prefix);
        Emit("restore_sweep_fio_read", total, Median(fio));
        foreach (var (c, t) in times)
            Emit($"restore_sweep_slot{c.Item1 >> 20}M_x{c.Item2}_r{c.Item3}", total, Median(t), extra: new() { ["vs_fio_read"] = Median(fio) / Median(t) });
    }

    // ==================================================================== peers

    private static double Fio(string args, long bytes, string kind)
    {
        var cmd = "fio " + args + " --output-format=json";
        Info("fio command: " + cmd);
        var psi = new ProcessStartInfo("fio") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (args + " --output-format=json").Split(' ', StringSplitOptions.RemoveEmptyEntries)) psi.ArgumentList.Add(a);
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var json = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        var wall = sw.Elapsed.TotalSeconds;
        using var doc = JsonDocument.Parse(json[json.IndexOf('{')..]);
        var job = doc.RootElement.GetProperty("jobs")[0];
        var bw = job.GetProperty(kind).GetProperty("bw_bytes").GetDouble();
        var runtimeMs = job.GetProperty("job_runtime").GetDouble();
        Info($"fio {kind}: bw {bw / GB:F3} GB/s, job_runtime {runtimeMs / 1000:F3} s, wall {wall:F3} s");
        // Seconds from fio's own runtime (it includes the end fsync for writes); falls back to bytes / bw.
        return runtimeMs > 0 ? runtimeMs / 1000 : bytes / bw;
    }

    private static (double Save, double Load)? Torch(long[] sizes, string dir, int repeats)
    {
        var check = Process.Start(new ProcessStartInfo("/usr/bin/python3", ["-c", "import torch"]) { RedirectStandardError = true })!;
        check.WaitForExit();
        if (check.ExitCode != 0) { Info("torch not available: skipped"); return null; }
        var script = Path.Combine(dir, "torch_bench.py");
        File.WriteAllText(script, TorchScript);
        var psi = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true };
        psi.ArgumentList.Add(script);
        psi.ArgumentList.Add(dir);
        psi.ArgumentList.Add(repeats.ToString(CultureInfo.InvariantCulture));
        psi.ArgumentList.Add(string.Join(',', sizes));
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        File.Delete(script);
        var line = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last();
        using var doc = JsonDocument.Parse(line);
        return (doc.RootElement.GetProperty("save").GetDouble(), doc.RootElement.GetProperty("load").GetDouble());
    }

    private const string TorchScript = """
import json, os, statistics, sys, time
import torch
d, repeats, sizes = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3].split(',')]
model = {f"layer_{i}": torch.rand(n // 4, dtype=torch.float32) for i, n in enumerate(sizes)}
path = os.path.join(d, "torch.pt")
saves, loads = [], []
for r in range(repeats):
    t = time.perf_counter()
    with open(path, "wb") as f:
        torch.save(model, f)
        f.flush()
        os.fsync(f.fileno())
    saves.append(time.perf_counter() - t)
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f: f.write("3")
    except OSError:
        pass
    t = time.perf_counter()
    m = torch.load(path)
    loads.append(time.perf_counter() - t)
    del m
    os.remove(path)
print(json.dumps({"save": statistics.median(saves), "load": statistics.median(loads)}))
""";

    // ==================================================================== plumbing

    private static bool CanDropCaches()
    {
        try { File.WriteAllText("/proc/sys/vm/drop_caches", "3"); return true; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    private static void DropCaches()
    {
        using (var p = Process.Start("sync")) p?.WaitForExit();
        CanDropCaches();
    }

    private static long ReadStatus(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        return 0;
    }

    private static long CurrentRss() => ReadStatus("VmRSS");

    private static long PeakRss() => ReadStatus("VmHWM");

    /// <summary>Resets VmHWM to the current RSS (Linux ≥ 4.0: write 5 to clear_refs).</summary>
    private static long s_peakRssSeen;

    private static void ResetPeakRss()
    {
        s_peakRssSeen = Math.Max(s_peakRssSeen, PeakRss());
        try { File.WriteAllText("/proc/self/clear_refs", "5"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    private static double Median(List<double> xs)
    {
        var s = xs.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[(s.Length / 2) - 1] + s[s.Length / 2]) / 2;
    }

    private static void Emit(string name, long bytes, double seconds, Dictionary<string, object>? extra = null)
    {
        var d = new Dictionary<string, object>
        {
            ["name"] = name, ["device"] = s_device, ["bytes"] = bytes, ["seconds"] = Math.Round(seconds, 4),
            ["gbps"] = bytes > 0 ? Math.Round(bytes / seconds / GB, 3) : 0, ["peak_rss_bytes"] = PeakRss(),
        };
        if (extra is not null) foreach (var (k, v) in extra) d[k] = v is double x ? Math.Round(x, 4) : v;
        Console.WriteLine(JsonSerializer.Serialize(d));
    }

    private static void Info(string s) => Console.Error.WriteLine("# " + s);

    private static string? Arg(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}

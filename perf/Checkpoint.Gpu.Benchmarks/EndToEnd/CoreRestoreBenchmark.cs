using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;

namespace CheckpointGpu.Benchmarks.EndToEnd;

/// <summary>
/// Restores through the public <see cref="Checkpoint"/> API (the whole restore walk: index, object graph, matching,
/// engine): into a built model, by restore-on-create (restore first, then build the model, then
/// <see cref="LoadStatus.WaitAsync"/>), by building the model and then restoring into it (the user's alternative to
/// restore-on-create), the bare model build (allocation and first touch of the model's memory), and the time from process start to the first training step of a restarted
/// process (<c>CheckpointManager.RestoreOrInitialize</c> before the model is built). Page cache dropped before each
/// restore; the in-process measurements are interleaved per repeat, so load drift hits them alike.
/// </summary>
internal static class CoreRestoreBenchmark
{
    private const string ChildMode = "e2e-first-step";

    /// <summary>Medians (seconds) and peaks (bytes beyond the RSS before the measurement).</summary>
    /// <param name="Built">Restore into a built model (building excluded).</param>
    /// <param name="OnCreate">Restore-on-create: <c>RestoreAsync</c> → build the model → <c>WaitAsync</c>.</param>
    /// <param name="OnCreateRestoreCall">Of <paramref name="OnCreate"/>: the <c>RestoreAsync</c> call (index, graph, prefetch).</param>
    /// <param name="OnCreateBuild">Of <paramref name="OnCreate"/>: creating the variables (allocation and their claims).</param>
    /// <param name="OnCreateWait">Of <paramref name="OnCreate"/>: <c>WaitAsync</c> after the last variable was created.</param>
    /// <param name="ModelBuild">Building the model with its initializers (zeros), no checkpoint: allocation + first touch.</param>
    /// <param name="BuildThenRestore">The alternative a user has to restore-on-create: build the model, then <c>Restore</c> into it.</param>
    /// <param name="BuildThenRestoreBuild">Of <paramref name="BuildThenRestore"/>: the build.</param>
    /// <param name="FirstStep">Process start → first training step of a restarted process.</param>
    /// <param name="FirstStepRestore">Of <paramref name="FirstStep"/>: the <c>RestoreOrInitialize</c> call.</param>
    /// <param name="BuiltPeakExtra">Peak extra RSS of <paramref name="Built"/>.</param>
    /// <param name="OnCreatePeakExtra">Peak extra RSS of <paramref name="OnCreate"/> (includes the model's own buffers).</param>
    public sealed record Result(double Built, double OnCreate, double OnCreateRestoreCall, double OnCreateBuild, double OnCreateWait,
        double ModelBuild, double BuildThenRestore, double BuildThenRestoreBuild, double FirstStep, double FirstStepRestore, long BuiltPeakExtra, long OnCreatePeakExtra);

    /// <summary>Variables "t{i}" under a root, tracked by a checkpoint as "model".</summary>
    private static (AutoTrackable Root, Checkpoint Checkpoint) Tree() { var root = new AutoTrackable(); return (root, new Checkpoint(("model", root)) { Log = null }); }

    private static string Edge(int i) => "t" + i.ToString(CultureInfo.InvariantCulture);

    public static async Task<Result> RunAsync(Accelerator acc, DeviceBuffer[] buffers, IReadOnlyList<TensorSpec> specs, string dir, int repeats, string gibArg, string device,
        Action dropCaches, Action resetPeakRss, Func<long> currentRss, Func<long> peakRss)
    {
        var ckptDir = Path.Combine(dir, "core");
        Directory.CreateDirectory(ckptDir);
        string prefix;
        var (root, ckpt) = Tree();
        var vars = new List<Variable>();
        var fresh = new List<Variable>();
        try
        {
            for (var i = 0; i < specs.Count; i++)
            {
                var v = Variable.Create(root, Edge(i), acc, specs[i].DType, specs[i].Shape);
                acc.DefaultStream.EnqueueCopy(buffers[i].AsView(), v.Buffer.AsView());
                vars.Add(v);
            }
            await acc.DefaultStream.SynchronizeAsync();
            var manager = new CheckpointManager(ckpt, ckptDir, maxToKeep: 1);
            prefix = manager.Save() ?? throw new InvalidOperationException("the manager skipped the save");

            // Interleaved per repeat (the machine's load and the disk drift within minutes): into the built model, the bare
            // model build, build-then-restore, restore-on-create. The built model stays alive throughout.
            var built = new List<double>(); long builtPeak = 0;
            var build = new List<double>();
            var buildThenRestore = new List<double>(); var buildThenRestoreBuild = new List<double>();
            var onCreate = new List<double>(); long onCreatePeak = 0;
            var onCreateCall = new List<double>(); var onCreateBuild = new List<double>(); var onCreateWait = new List<double>();
            for (var r = 0; r < repeats; r++)
            {
                // ---- into the built model
                {
                    dropCaches(); resetPeakRss();
                    var before = currentRss();
                    var sw = Stopwatch.StartNew();
                    using (ckpt.Restore(prefix)) { }
                    built.Add(sw.Elapsed.TotalSeconds);
                    builtPeak = Math.Max(builtPeak, peakRss() - before);
                }

                // ---- the bare model build (initializers, no checkpoint): what allocation and first touch cost on this device
                {
                    var (root1, ckpt1) = Tree();
                    var sw = Stopwatch.StartNew();
                    for (var i = 0; i < specs.Count; i++) fresh.Add(Variable.Create(root1, Edge(i), acc, specs[i].DType, specs[i].Shape));
                    await acc.DefaultStream.SynchronizeAsync();
                    build.Add(sw.Elapsed.TotalSeconds);
                    ckpt1.Dispose();
                    foreach (var v in fresh) v.Dispose();
                    fresh.Clear();
                }

                // ---- build the model, then restore into it (what a user does without restore-on-create)
                {
                    dropCaches();
                    var (root1, ckpt1) = Tree();
                    var sw = Stopwatch.StartNew();
                    for (var i = 0; i < specs.Count; i++) fresh.Add(Variable.Create(root1, Edge(i), acc, specs[i].DType, specs[i].Shape));
                    buildThenRestoreBuild.Add(sw.Elapsed.TotalSeconds);
                    using (ckpt1.Restore(prefix)) { }
                    buildThenRestore.Add(sw.Elapsed.TotalSeconds);
                    ckpt1.Dispose();
                    foreach (var v in fresh) v.Dispose();
                    fresh.Clear();
                }

                // ---- restore-on-create: restore, then build, then wait for the values
                {
                    dropCaches(); resetPeakRss();
                    var before = currentRss();
                    var (root2, ckpt2) = Tree();
                    var sw = Stopwatch.StartNew();
                    var status = await ckpt2.RestoreAsync(prefix);
                    var tCall = sw.Elapsed.TotalSeconds;
                    for (var i = 0; i < specs.Count; i++) fresh.Add(Variable.Create(root2, Edge(i), acc, specs[i].DType, specs[i].Shape));
                    var tBuild = sw.Elapsed.TotalSeconds;
                    await status.WaitAsync();
                    onCreate.Add(sw.Elapsed.TotalSeconds);
                    onCreateCall.Add(tCall); onCreateBuild.Add(tBuild - tCall); onCreateWait.Add(sw.Elapsed.TotalSeconds - tBuild);
                    onCreatePeak = Math.Max(onCreatePeak, peakRss() - before);
                    status.AssertConsumed();
                    ckpt2.Dispose();
                    foreach (var v in fresh) v.Dispose();
                    fresh.Clear();
                }
            }
            ckpt.Dispose();
            foreach (var v in vars) v.Dispose();
            vars.Clear();

            // ---- a restarted process: start → RestoreOrInitialize → model built → first step
            var first = new List<double>(); var firstRestore = new List<double>();
            for (var r = 0; r < repeats; r++)
            {
                dropCaches();
                var (exe, lead) = SelfCommand();
                var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true };
                foreach (var a in lead) psi.ArgumentList.Add(a);
                foreach (var a in new[] { ChildMode, "--dir", ckptDir, "--gib", gibArg, "--device", device }) psi.ArgumentList.Add(a);
                using var p = Process.Start(psi)!;
                var stdout = await p.StandardOutput.ReadToEndAsync();
                var stderr = await p.StandardError.ReadToEndAsync();
                await p.WaitForExitAsync();
                if (p.ExitCode != 0) throw new InvalidOperationException($"{ChildMode} failed ({p.ExitCode}): {stderr}");
                using var json = JsonDocument.Parse(stdout.Trim().Split('\n')[^1]);
                // Process start (the OS's start time, so runtime start-up counts) → first step done.
                first.Add(json.RootElement.GetProperty("step_done_seconds").GetDouble());
                firstRestore.Add(json.RootElement.GetProperty("restore_seconds").GetDouble());
            }
            return new Result(Median(built), Median(onCreate), Median(onCreateCall), Median(onCreateBuild), Median(onCreateWait), Median(build), Median(buildThenRestore), Median(buildThenRestoreBuild),
                Median(first), Median(firstRestore), builtPeak, onCreatePeak);
        }
        finally
        {
            ckpt.Dispose();
            foreach (var v in vars) v.Dispose();
            foreach (var v in fresh) v.Dispose();
            foreach (var f in Directory.EnumerateFiles(ckptDir)) File.Delete(f);
        }
    }

    /// <summary>
    /// The restarted process: <c>RestoreOrInitialize</c> before the model exists, build the model (its variables take their
    /// values on creation), then a stand-in first step that reads every variable on its stream (the step's own compute is
    /// the model's, not the checkpoint's). Prints seconds since process start.
    /// </summary>
    public static async Task<int> RunChildAsync(string[] args)
    {
        var since = Process.GetCurrentProcess().StartTime.ToUniversalTime();
        double Now() => (DateTime.UtcNow - since).TotalSeconds;
        var dir = Arg(args, "--dir")!;
        var gib = double.Parse(Arg(args, "--gib") ?? "1", CultureInfo.InvariantCulture);
        var specs = ModelLayouts.Default((long)(gib * (1L << 30)));
        using var acc = Accelerator.Create(DeviceKinds.Parse(Arg(args, "--device") ?? "cpu"));
        var (root, ckpt) = Tree();
        var manager = new CheckpointManager(ckpt, dir, maxToKeep: 1);
        var t0 = Now();
        var restored = manager.RestoreOrInitialize() ?? throw new InvalidOperationException($"no checkpoint in {dir}");
        var tRestore = Now();
        var vars = new List<Variable>();
        for (var i = 0; i < specs.Length; i++) vars.Add(Variable.Create(root, Edge(i), acc, specs[i].DType, specs[i].Shape));
        // Stand-in step: every variable is read on its stream (ordered after its restore copy).
        var probe = new byte[4096];
        foreach (var v in vars)
        {
            acc.DefaultStream.EnqueueCopyToHost(v.Buffer.View(0, Math.Min(v.LengthInBytes, probe.Length)), (Memory<byte>)probe);
            await acc.DefaultStream.SynchronizeAsync();
        }
        var tStep = Now();
        ckpt.Dispose();
        foreach (var v in vars) v.Dispose();
        Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["checkpoint"] = restored, ["before_restore_seconds"] = t0, ["restore_seconds"] = tRestore - t0, ["step_done_seconds"] = tStep, ["after_step_seconds"] = Now(),
        }));
        return 0;
    }

    private static (string Exe, string[] Lead) SelfCommand()
    {
        var path = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        return Path.GetFileNameWithoutExtension(path) == "dotnet" ? (path, [typeof(CoreRestoreBenchmark).Assembly.Location]) : (path, []);
    }

    private static string? Arg(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    private static double Median(List<double> xs)
    {
        var s = xs.Order().ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }
}

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
/// <see cref="LoadStatus.WaitAsync"/>), and the time from process start to the first training step of a restarted
/// process (<c>CheckpointManager.RestoreOrInitialize</c> before the model is built). Page cache dropped before each.
/// </summary>
internal static class CoreRestoreBenchmark
{
    private const string ChildMode = "e2e-first-step";

    public sealed record Result(double Built, double OnCreate, double FirstStep, double FirstStepRestore, long BuiltPeakExtra, long OnCreatePeakExtra);

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
            prefix = manager.Save();

            // ---- into the built model
            var built = new List<double>(); long builtPeak = 0;
            for (var r = 0; r < repeats; r++)
            {
                dropCaches(); resetPeakRss();
                var before = currentRss();
                var sw = Stopwatch.StartNew();
                using (ckpt.Restore(prefix)) { }
                built.Add(sw.Elapsed.TotalSeconds);
                builtPeak = Math.Max(builtPeak, peakRss() - before);
            }
            ckpt.Dispose();
            foreach (var v in vars) v.Dispose();
            vars.Clear();

            // ---- restore-on-create: restore, then build, then wait for the values
            var onCreate = new List<double>(); long onCreatePeak = 0;
            for (var r = 0; r < repeats; r++)
            {
                dropCaches(); resetPeakRss();
                var before = currentRss();
                var (root2, ckpt2) = Tree();
                var sw = Stopwatch.StartNew();
                var status = await ckpt2.RestoreAsync(prefix);
                for (var i = 0; i < specs.Count; i++) vars.Add(Variable.Create(root2, Edge(i), acc, specs[i].DType, specs[i].Shape));
                await status.WaitAsync();
                onCreate.Add(sw.Elapsed.TotalSeconds);
                onCreatePeak = Math.Max(onCreatePeak, peakRss() - before);
                status.AssertConsumed();
                ckpt2.Dispose();
                foreach (var v in vars) v.Dispose();
                vars.Clear();
            }

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
            return new Result(Median(built), Median(onCreate), Median(first), Median(firstRestore), builtPeak, onCreatePeak);
        }
        finally
        {
            ckpt.Dispose();
            foreach (var v in vars) v.Dispose();
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

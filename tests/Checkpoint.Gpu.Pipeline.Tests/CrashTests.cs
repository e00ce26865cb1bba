using System.Diagnostics;
using CheckpointGpu.Format;
using Xunit.Abstractions;

namespace CheckpointGpu.Pipeline.Tests;

/// <summary>
/// Kills a child process that saves in a loop (SIGKILL at random instants) and checks after each kill that the
/// state file names a complete checkpoint with the exact values of its step, and that every <c>.index</c> on disk
/// belongs to a complete checkpoint. 200 kills by default; set <c>CKPT_CRASH_KILLS</c> for a longer run (the long mode:
/// <c>CKPT_CRASH_KILLS=1000 dotnet test tests/Checkpoint.Gpu.Pipeline.Tests -c Release --filter Category=Crash</c>).
/// Each child holds the directory's lock (a killed holder must never block the next child) and removes the debris of
/// the previous kill; after the last kill one more save must leave no debris at all.
/// </summary>
public sealed class CrashTests(ITestOutputHelper output)
{
    private static readonly long[] Sizes = [1, 4097, 65541, 300_000, 12];

    [Fact]
    [Trait("Category", "Crash")]
    public async Task SaveLoop_KilledAtRandomInstants_StateFileAlwaysNamesACompleteCheckpoint()
    {
        var kills = int.TryParse(Environment.GetEnvironmentVariable("CKPT_CRASH_KILLS"), out var k) ? k : 200;
        var seed = Environment.TickCount;
        output.WriteLine($"seed {seed}, kills {kills}");
        var random = new Random(seed);
        var child = ChildPath();
        using var dir = new TempDir();
        var step = 1;
        var named = 0;
        var debrisSeen = 0;
        var sw = Stopwatch.StartNew();
        for (var kill = 0; kill < kills; kill++)
        {
            var psi = new ProcessStartInfo("dotnet", [child, dir.Path, step.ToString(System.Globalization.CultureInfo.InvariantCulture)])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            psi.Environment["DOTNET_TieredPGO"] = "0";
            psi.Environment["DOTNET_TC_QuickJitForLoops"] = "1";
            using var p = Process.Start(psi)!;
            var line = await p.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30));
            if (line != "started")
            {
                p.Kill();
                Assert.Fail($"child did not start: '{line}' {await p.StandardError.ReadToEndAsync()}");
            }
            if (kill == 0)
            {
                // One saver per directory: while the child runs, this process cannot take the lock, and is told the child's pid.
                var locked = Assert.Throws<CheckpointDirectoryLockedException>(() => CheckpointDirectoryLock.Acquire(dir.Path));
                Assert.Equal(p.Id, locked.HolderProcessId);
            }
            // Kill anywhere from mid-first-save to a few saves later.
            await Task.Delay(random.Next(0, 400));
            p.Kill(); // SIGKILL on Unix
            await p.WaitForExitAsync();

            var latest = CheckpointStateFile.LatestCheckpoint(dir.Path);
            foreach (var index in Directory.EnumerateFiles(dir.Path, "*.index"))
            {
                var prefix = index[..^".index".Length];
                VerifyCheckpoint(prefix);
            }
            if (latest is not null)
            {
                named++;
                var s = VerifyCheckpoint(latest);
                step = Math.Max(step, s + 1);
            }
            // Leftover temporaries of the killed save are allowed here (they are never named): the next child removes them.
            debrisSeen += CheckpointDebris.Find(dir.Path).Count;
        }
        output.WriteLine($"{kills} kills in {sw.Elapsed.TotalSeconds:F1} s; state file named a checkpoint after {named}; reached step {step}; {debrisSeen} temporaries left by kills (each removed by the next child)");

        // A subsequent save (after the last kill) leaves no debris: the killed save's temporaries are gone, its own committed.
        var psiOnce = new ProcessStartInfo("dotnet", [child, dir.Path, step.ToString(System.Globalization.CultureInfo.InvariantCulture), "once"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using (var once = Process.Start(psiOnce)!)
        {
            var onceOut = once.StandardOutput.ReadToEndAsync();
            var onceErr = once.StandardError.ReadToEndAsync();
            await once.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
            Assert.True(once.ExitCode == 0, $"final save failed: {await onceOut} {await onceErr}");
        }
        Assert.Empty(CheckpointDebris.Find(dir.Path));
        Assert.Equal(step, VerifyCheckpoint(CheckpointStateFile.LatestCheckpoint(dir.Path)!));
        Assert.True(named > kills / 2, $"only {named} of {kills} kills left a named checkpoint: the child rarely finished a save");
        // Kills must also land after commits (not only inside the first save of each child).
        Assert.True(step > kills / 4, $"only reached step {step}: kills rarely landed after a commit");
    }

    /// <summary>Verifies every CRC and the exact values; returns the step.</summary>
    private static int VerifyCheckpoint(string prefix)
    {
        var step = int.Parse(Path.GetFileName(prefix)["ckpt-".Length..], System.Globalization.CultureInfo.InvariantCulture);
        using var r = TensorBundleReader.Open(prefix);
        foreach (var e in r.Entries) r.VerifyEntry(e);
        for (var i = 0; i < Sizes.Length; i++)
        {
            var e = r.GetEntry($"t{i}");
            var got = new byte[e.Size];
            r.ReadTensor(e, got);
            Assert.True(Data.Bytes(7, i, step, Sizes[i]).AsSpan().SequenceEqual(got), $"{prefix}: t{i} is not step {step}'s value");
        }
        Assert.Equal($"graph-of-step-{step}", System.Text.Encoding.UTF8.GetString(r.ReadStrings(r.GetEntry(CheckpointKeys.ObjectGraph))[0]));
        return step;
    }

    private static string ChildPath()
    {
        // tests/Checkpoint.Gpu.Pipeline.Tests/bin/<Configuration>/net10.0/ → tests/Checkpoint.Gpu.Pipeline.CrashChild/bin/<Configuration>/net10.0/
        var baseDir = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/'));
        var tfm = baseDir.Name;
        var configuration = baseDir.Parent!.Name;
        var tests = baseDir.Parent!.Parent!.Parent!.Parent!.FullName;
        var path = Path.Combine(tests, "Checkpoint.Gpu.Pipeline.CrashChild", "bin", configuration, tfm, "Checkpoint.Gpu.Pipeline.CrashChild.dll");
        Assert.True(File.Exists(path), $"crash child not built: {path}");
        return path;
    }
}

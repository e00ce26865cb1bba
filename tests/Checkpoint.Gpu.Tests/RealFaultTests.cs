using System.Diagnostics;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;
using CheckpointGpu.TestSupport;
using Xunit.Abstractions;

namespace CheckpointGpu.Tests;

/// <summary>
/// Real faults, not injected ones: a file system that is really full (a size-limited tmpfs mounted by the test), a
/// directory really made read-only (a read-only remount: root ignores chmod), the checkpoint directory deleted while a
/// save runs, a data file truncated between save and restore. The mount tests need root (CI runs as root); elsewhere
/// they print why they did not run and pass.
/// </summary>
public sealed class RealFaultTests(CpuFixture fixture, ITestOutputHelper output) : IClassFixture<CpuFixture>
{
    private readonly Accelerator _cpu = fixture.Accelerator;

    private sealed class Model : AutoTrackable
    {
        public Variable W { get; }
        public Model(Accelerator acc, long floats, float value)
        {
            W = AddVariable("w", acc, DType.Float, new TensorShape(floats));
            W.Assign(Enumerable.Repeat(value, (int)floats).ToArray().AsSpan());
        }
    }

    private static CheckpointOptions Buffered(Accelerator acc, IShardStorage? storage = null) => new()
    {
        // tmpfs refuses O_DIRECT; ask for buffered IO explicitly so the process-wide fallback flag is never flipped by these tests.
        Pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { UseDirectIO = false, SlotSizeInBytes = 1 << 20, SlotCount = 2, Storage = storage ?? LocalShardStorage.Instance }),
    };

    [Fact]
    public async Task FullFileSystem_SaveLargerThanFreeSpace_ClearErrorPreviousCheckpointIntactNoTemporaries()
    {
        using var mount = TmpfsMount.TryCreate("full", sizeInMiB: 10, output);
        if (mount is null) return;
        var model = new Model(_cpu, 1_500_000, 1f);   // 6 MB of float32: the first checkpoint fits in 10 MiB, a second does not
        await using var checkpoint = new Checkpoint(("model", model)) { Log = null };
        using var manager = new CheckpointManager(checkpoint, mount.Path, maxToKeep: 3);
        var first = manager.Save()!;
        var stateBytes = File.ReadAllBytes(Path.Combine(mount.Path, "checkpoint"));
        var indexBytes = File.ReadAllBytes(BundleNaming.IndexFile(first));

        // Synchronous save (TensorBundleWriter): ENOSPC from write(2)/fsync.
        model.W.Assign(Enumerable.Repeat(2f, 1_500_000).ToArray().AsSpan());
        var sync = Assert.ThrowsAny<IOException>(() => manager.Save());
        output.WriteLine($"sync save on a full tmpfs: {sync.GetType().Name}: {sync.Message}");
        Assert.Contains(mount.Path, sync.Message + sync.InnerException?.Message);
        AssertIntact();

        // Asynchronous save through the IO pipeline.
        var options = Buffered(_cpu);
        await using (options.Pipeline!)
        {
            var handle = (await manager.SaveAsync(options: options))!;
            var async = await Assert.ThrowsAnyAsync<IOException>(() => handle.Completion);
            output.WriteLine($"async save on a full tmpfs: {async.GetType().Name}: {async.Message}");
            Assert.Contains(mount.Path, async.Message);
        }
        AssertIntact();

        void AssertIntact()
        {
            Assert.Equal(stateBytes, File.ReadAllBytes(Path.Combine(mount.Path, "checkpoint")));
            Assert.Equal(indexBytes, File.ReadAllBytes(BundleNaming.IndexFile(first)));
            Assert.Equal(first, CheckpointStateFile.LatestCheckpoint(mount.Path));
            using (var reader = TensorBundleReader.Open(first))
                foreach (var e in reader.Entries) reader.VerifyEntry(e);
            Assert.Empty(CheckpointDebris.Find(mount.Path));
            Assert.Equal(["checkpoint", CheckpointDirectoryLock.FileName, "ckpt-1.data-00000-of-00001", "ckpt-1.index"],
                Directory.GetFiles(mount.Path).Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal).ToArray());
        }
    }

    [Fact]
    public async Task ReadOnlyFileSystem_Save_ClearErrorPreviousCheckpointReadable()
    {
        using var mount = TmpfsMount.TryCreate("ro", sizeInMiB: 4, output);
        if (mount is null) return;
        var model = new Model(_cpu, 1000, 3f);
        await using var checkpoint = new Checkpoint(("model", model)) { Log = null };
        string first;
        using (var manager = new CheckpointManager(checkpoint, mount.Path, maxToKeep: 3)) first = manager.Save()!;
        mount.RemountReadOnly();   // chmod is no obstacle to root: a read-only file system is

        using var again = new CheckpointManager(checkpoint, mount.Path, maxToKeep: 3);
        var sync = Assert.ThrowsAny<Exception>(() => again.Save());
        output.WriteLine($"save on a read-only file system: {sync.GetType().Name}: {sync.Message}");
        Assert.True(sync is IOException or UnauthorizedAccessException, sync.ToString());
        Assert.Contains(mount.Path, sync.Message);
        var options = Buffered(_cpu);
        await using (options.Pipeline!)
        {
            var failure = await Assert.ThrowsAnyAsync<Exception>(async () => await (await again.SaveAsync(options: options))!.Completion);
            Assert.True(failure is IOException or UnauthorizedAccessException, failure.ToString());
        }
        // Restoring needs no lock and no write access.
        var fresh = new Model(_cpu, 1000, 0f);
        using var reader = new Checkpoint(("model", fresh)) { Log = null };
        reader.Restore(CheckpointStateFile.LatestCheckpoint(mount.Path)).AssertConsumed();
        Assert.All(fresh.W.Read<float>().ToArray(), v => Assert.Equal(3f, v));
        Assert.Equal(first, CheckpointStateFile.LatestCheckpoint(mount.Path));
    }

    [Fact]
    public async Task DirectoryRemovedMidSave_SaveFailsCleanly_NextSaveSucceeds()
    {
        using var dir = new TempDir("removed");
        var ckptDir = Path.Combine(dir.Path, "run");
        var model = new Model(_cpu, 1_000_000, 1f);   // 4 MB through a 1 MiB × 2 ring with slow writes: the save takes a while
        await using var checkpoint = new Checkpoint(("model", model)) { Log = null };
        using var manager = new CheckpointManager(checkpoint, ckptDir, maxToKeep: 3);
        var slow = new FaultInjectingShardStorage(LocalShardStorage.Instance) { WriteDelay = TimeSpan.FromMilliseconds(150) };
        var options = Buffered(_cpu, slow);
        await using (options.Pipeline!)
        {
            var handle = (await manager.SaveAsync(options: options))!;
            var clock = Stopwatch.StartNew();
            while (!Directory.Exists(ckptDir) || !Directory.EnumerateFiles(ckptDir, "*.tempstate*").Any())
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), "the save never created its temporary files");
                await Task.Delay(5);
            }
            Directory.Delete(ckptDir, recursive: true);   // the directory goes away while data is being written
            var failure = await Assert.ThrowsAnyAsync<IOException>(() => handle.Completion);
            output.WriteLine($"directory removed mid-save: {failure.GetType().Name}: {failure.Message}");
            Assert.Contains(ckptDir, failure.Message);
        }
        Assert.False(File.Exists(Path.Combine(ckptDir, "checkpoint")), "no state file may name a checkpoint that was never committed");
        // The next save recreates the directory and succeeds.
        var next = manager.Save()!;
        Assert.Equal(next, CheckpointStateFile.LatestCheckpoint(ckptDir));
        Assert.Empty(CheckpointDebris.Find(ckptDir));
    }

    [Fact]
    public async Task DataFileTruncatedBetweenSaveAndRestore_TypedErrorNamingTheFile_NothingAssigned()
    {
        using var dir = new TempDir("truncated");
        var model = new Model(_cpu, 10_000, 5f);
        string prefix;
        using (var checkpoint = new Checkpoint(("model", model)) { Log = null })
        using (var manager = new CheckpointManager(checkpoint, dir.Path, maxToKeep: 3))
            prefix = manager.Save()!;
        var data = BundleNaming.DataFile(prefix, 0, 1);
        var length = new FileInfo(data).Length;
        foreach (var cut in new[] { length - 1, length / 2, 0L })
        {
            using (var fs = new FileStream(data, FileMode.Open, FileAccess.Write)) fs.SetLength(cut);
            var fresh = new Model(_cpu, 10_000, -1f);
            using var restoring = new Checkpoint(("model", fresh)) { Log = null };
            var sync = Assert.ThrowsAny<Exception>(() => restoring.Restore(prefix));
            output.WriteLine($"truncated to {cut} of {length} bytes, Restore: {sync.GetType().Name}: {sync.Message}");
            Assert.IsType<CheckpointFormatException>(sync);
            Assert.Contains(Path.GetFileName(data), sync.Message);
            var async = await Assert.ThrowsAnyAsync<Exception>(() => restoring.RestoreAsync(prefix));
            output.WriteLine($"truncated to {cut} of {length} bytes, RestoreAsync: {async.GetType().Name}: {async.Message}");
            Assert.IsType<CheckpointFormatException>(async);
            Assert.Contains(Path.GetFileName(data), async.Message);
            Assert.All(fresh.W.Read<float>().ToArray(), v => Assert.Equal(-1f, v));   // nothing half-restored
        }
    }
}

/// <summary>
/// A size-limited tmpfs mounted for one test (root only): unmounted (lazily, so a busy handle cannot keep it) and removed
/// on dispose, including when the test fails.
/// </summary>
internal sealed class TmpfsMount : IDisposable
{
    private TmpfsMount(string path) { Path = path; }

    public string Path { get; }

    public static TmpfsMount? TryCreate(string name, int sizeInMiB, ITestOutputHelper output)
    {
        if (!OperatingSystem.IsLinux() || Environment.UserName != "root")
        {
            output.WriteLine($"SKIPPED: mounting a tmpfs needs root on Linux (running as '{Environment.UserName}' on {Environment.OSVersion}).");
            return null;
        }
        var path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"ckpt-mnt-{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(path);
        var (code, text) = Run("mount", "-t", "tmpfs", "-o", $"size={sizeInMiB}m", "tmpfs", path);
        if (code != 0)
        {
            Directory.Delete(path);
            // Root without CAP_SYS_ADMIN (an unprivileged container) cannot mount either: say so and skip.
            output.WriteLine($"SKIPPED: mount -t tmpfs failed ({code}): {text.Trim()}");
            return null;
        }
        return new TmpfsMount(path);
    }

    public void RemountReadOnly()
    {
        var (code, text) = Run("mount", "-o", "remount,ro", Path);
        Assert.True(code == 0, $"remount,ro failed: {text}");
    }

    public void Dispose()
    {
        Run("umount", "-l", Path);
        try { Directory.Delete(Path, recursive: true); }
        catch (IOException) { }
    }

    private static (int Code, string Text) Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var text = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, text);
    }
}

using System.Diagnostics;
using System.Globalization;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Tests;

/// <summary>
/// No queued save is dropped silently (Dispose waits, bounded; accelerators cannot be disposed under a save), one saver
/// per directory (CheckpointDirectoryLock), and the debris of killed saves is removed by the next manager save — only
/// names matching our own temporary patterns.
/// </summary>
public sealed class DurabilityTests(CpuFixture fixture) : IClassFixture<CpuFixture>
{
    private readonly Accelerator _cpu = fixture.Accelerator;

    private sealed class Model : AutoTrackable
    {
        public Variable W { get; }
        public Model(Accelerator acc, long floats)
        {
            W = AddVariable("w", acc, DType.Float, new TensorShape(floats));
            W.Assign(Enumerable.Range(0, (int)floats).Select(i => (float)i).ToArray().AsSpan());
        }
    }

    private static CheckpointPipeline Pipeline(Accelerator acc, IShardStorage storage, TimeSpan? disposeTimeout = null) =>
        new(acc, new CheckpointPipelineOptions
        {
            UseDirectIO = false, SlotSizeInBytes = 1 << 16, SlotCount = 2, Storage = storage,
            DisposeTimeout = disposeTimeout ?? TimeSpan.FromMinutes(1),
        });

    // ------------------------------------------------------------------ Dispose never drops a queued save

    [Fact]
    public async Task SyncDispose_RightAfterQueuingSlowSaves_EverySaveIsOnDisk()
    {
        using var dir = new TempDir("dispose-wait");
        var model = new Model(_cpu, 100_000);
        var slow = new FaultInjectingShardStorage(LocalShardStorage.Instance) { WriteDelay = TimeSpan.FromMilliseconds(20) };
        await using var pipeline = Pipeline(_cpu, slow);
        var options = new CheckpointOptions { Pipeline = pipeline };
        var checkpoint = new Checkpoint(("model", model)) { Log = null };
        var manager = new CheckpointManager(checkpoint, dir.Path, maxToKeep: null);
        var handles = new List<SaveHandle>();
        for (var i = 0; i < 3; i++) handles.Add((await manager.SaveAsync(options: options))!);
        Assert.False(handles[^1].Completion.IsCompleted);   // 400 KB through 64 KiB slots at 20 ms per write: still running
        checkpoint.Dispose();   // plain `using`: must wait
        Assert.All(handles, h => Assert.True(h.Completion.IsCompletedSuccessfully));
        Assert.Equal(Path.Combine(dir.Path, "ckpt-3"), CheckpointStateFile.LatestCheckpoint(dir.Path));
        Assert.Equal(["ckpt-1", "ckpt-2", "ckpt-3"], CheckpointStateFile.Read(dir.Path)!.AllModelCheckpointPaths);
        manager.Dispose();
    }

    [Fact]
    public async Task SyncDispose_SavePastTheTimeout_ThrowsNamingIt_NeverReturnsAsIfDurable()
    {
        using var dir = new TempDir("dispose-timeout");
        var model = new Model(_cpu, 10_000);
        var hung = new FaultInjectingShardStorage(LocalShardStorage.Instance) { BlockWriteWhen = _ => true };
        var pipeline = Pipeline(_cpu, hung, TimeSpan.FromMilliseconds(300));
        using var cts = new CancellationTokenSource();
        var checkpoint = new Checkpoint(("model", model)) { Log = null };
        var handle = await checkpoint.SaveAsync(Path.Combine(dir.Path, "ckpt"), new CheckpointOptions { Pipeline = pipeline }, cts.Token);
        var error = Assert.Throws<TimeoutException>(() => checkpoint.Dispose());
        Assert.Contains(Path.Combine(dir.Path, "ckpt-1"), error.Message);
        Assert.False(handle.Completion.IsCompleted);
        var pipelineError = Assert.Throws<TimeoutException>(() => pipeline.Dispose());
        Assert.Contains("ckpt-1", pipelineError.Message);
        await cts.CancelAsync();   // un-hang the device: the save is cancelled and cleans up
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => handle.Completion);
        Assert.Empty(CheckpointDebris.Find(dir.Path));
    }

    [Fact]
    public async Task Dispose_SaveFailsAfterDisposeBegan_ThrowsNamingTheCheckpointNotOnDisk()
    {
        using var dir = new TempDir("dispose-fail");
        var model = new Model(_cpu, 10_000);
        var failing = new FaultInjectingShardStorage(LocalShardStorage.Instance) { WriteDelay = TimeSpan.FromMilliseconds(200), FailWriteWhen = _ => true };
        await using var pipeline = Pipeline(_cpu, failing);
        var checkpoint = new Checkpoint(("model", model)) { Log = null };
        await checkpoint.SaveAsync(Path.Combine(dir.Path, "ckpt"), new CheckpointOptions { Pipeline = pipeline });
        var error = Assert.Throws<IOException>(() => checkpoint.Dispose());
        Assert.Contains("NOT on disk", error.Message);
        Assert.Contains(Path.Combine(dir.Path, "ckpt-1"), error.Message);
        Assert.Contains("injected write failure", error.InnerException!.Message);

        var again = new Checkpoint(("model", new Model(_cpu, 10))) { Log = null };
        await again.SaveAsync(Path.Combine(dir.Path, "other"), new CheckpointOptions { Pipeline = pipeline });
        var asyncError = await Assert.ThrowsAsync<IOException>(async () => await again.DisposeAsync());
        Assert.Contains("other-1", asyncError.Message);
    }

    [Fact]
    public async Task AcceleratorDispose_WhileASaveReadsFromIt_Throws_SaveCompletesIntact()
    {
        using var dir = new TempDir("acc-lease");
        var acc = Accelerator.Create(AcceleratorKind.Cpu);
        var model = new Model(acc, 100_000);
        var slow = new FaultInjectingShardStorage(LocalShardStorage.Instance) { WriteDelay = TimeSpan.FromMilliseconds(10) };
        var pipeline = Pipeline(acc, slow);
        var checkpoint = new Checkpoint(("model", model)) { Log = null };
        var handle = await checkpoint.SaveAsync(Path.Combine(dir.Path, "ckpt"), new CheckpointOptions { Pipeline = pipeline });
        var error = Assert.Throws<InvalidOperationException>(() => acc.Dispose());   // `using var device` disposed too early
        Assert.Contains("ckpt-1", error.Message);
        Assert.False(acc.IsDisposed);
        await handle.Completion;
        using (var reader = TensorBundleReader.Open(handle.CheckpointPrefix))
        {
            var bytes = new byte[400_000];
            reader.ReadTensor(reader.GetEntry("model/w/.ATTRIBUTES/VARIABLE_VALUE"), bytes);
            Assert.Equal(Enumerable.Range(0, 100_000).Select(i => (float)i).ToArray(), System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray());
        }
        await checkpoint.DisposeAsync();
        await pipeline.DisposeAsync();
        acc.Dispose();   // nothing reads from it any more
        Assert.True(acc.IsDisposed);
    }

    // ------------------------------------------------------------------ one saver per directory

    [Fact]
    public void AnotherProcessHoldsTheLock_SaveThrowsNamingItsPid_RestoreStillWorks_KilledHolderNeverBlocks()
    {
        using var dir = new TempDir("lock");
        var model = new Model(_cpu, 10);
        using (var c = new Checkpoint(("model", model)) { Log = null })
        using (var m = new CheckpointManager(c, dir.Path, maxToKeep: 3)) m.Save();   // a first checkpoint, lock released
        var lockFile = Path.Combine(dir.Path, CheckpointDirectoryLock.FileName);
        // The holder: util-linux flock(1) takes the same kind of lock (flock LOCK_EX) that .NET's FileShare.None takes.
        // Its pid goes into the file first (what CheckpointDirectoryLock's holder writes): `flock` keeps it as the process.
        var psi = new ProcessStartInfo("sh") { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { "-c", $"echo $$ > '{lockFile}'; exec flock -x -o '{lockFile}' sh -c 'echo locked; exec sleep 120'" }) psi.ArgumentList.Add(a);
        using var holder = Process.Start(psi)!;
        try
        {
            Assert.Equal("locked", holder.StandardOutput.ReadLine());
            using var checkpoint = new Checkpoint(("model", model)) { Log = null };
            using var manager = new CheckpointManager(checkpoint, dir.Path, maxToKeep: 3);
            Assert.NotNull(manager.RestoreOrInitialize());   // reading takes no lock
            var error = Assert.Throws<CheckpointDirectoryLockedException>(() => manager.Save());
            Assert.IsAssignableFrom<IOException>(error);
            Assert.Equal(holder.Id, error.HolderProcessId);
            Assert.Contains($"pid {holder.Id}", error.Message);
            Assert.Contains(dir.Path, error.Message);
            Assert.Equal(Path.Combine(dir.Path, "ckpt-1"), CheckpointStateFile.LatestCheckpoint(dir.Path));

            holder.Kill(entireProcessTree: true);   // SIGKILL: the OS drops its lock
            holder.WaitForExit();
            var saved = manager.Save();   // the save counter was incremented by the refused save, as in TF
            Assert.Equal(saved, CheckpointStateFile.LatestCheckpoint(dir.Path));
            Assert.Equal(Environment.ProcessId, CheckpointDirectoryLock.ReadHolderProcessId(dir.Path));
        }
        finally
        {
            if (!holder.HasExited) holder.Kill(entireProcessTree: true);
        }
    }

    [Fact]
    public void TwoManagersInOneProcess_ShareTheLock_ReleasedWhenBothAreDisposed()
    {
        using var dir = new TempDir("lock-shared");
        var model = new Model(_cpu, 10);
        using var checkpoint = new Checkpoint(("model", model)) { Log = null };
        var a = new CheckpointManager(checkpoint, dir.Path, maxToKeep: 3);
        var b = new CheckpointManager(checkpoint, dir.Path, maxToKeep: 3);
        a.Save();
        b.Save();
        a.Dispose();
        Assert.True(IsLockedByAnotherOpen(dir.Path));
        b.Dispose();
        Assert.False(IsLockedByAnotherOpen(dir.Path));
        Assert.Throws<ObjectDisposedException>(() => b.Save());
    }

    private static bool IsLockedByAnotherOpen(string dir)
    {
        var psi = new ProcessStartInfo("flock") { UseShellExecute = false };
        foreach (var a in new[] { "-n", "-x", Path.Combine(dir, CheckpointDirectoryLock.FileName), "true" }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.WaitForExit();
        return p.ExitCode != 0;
    }

    // ------------------------------------------------------------------ debris

    [Fact]
    public void FirstManagerSave_RemovesDebrisOfKilledSaves_AndOnlyOurOwnTemporaryNames()
    {
        using var dir = new TempDir("debris");
        string[] debris =
        [
            "ckpt-7.index.tempstate12345678901234567890",
            "ckpt-7.data-00000-of-00002.tempstate42",
            "ckpt-7.data-00001-of-00002.tempstate1",
            "checkpoint.tmp0123456789abcdef0123456789abcdef",
        ];
        string[] foreign =
        [
            "notes.txt", "ckpt-7.index.tempstateX", "ckpt-7.index.tempstate", "checkpoint.tmp0123", "checkpoint.tmp0123456789ABCDEF0123456789ABCDEF",
            "mine.tempstate5", "ckpt-7.data-0-of-2.tempstate5", "checkpoint.lock.tmp0123456789abcdef0123456789abcdef", "ckpt-7.index",
        ];
        foreach (var f in debris.Concat(foreign)) File.WriteAllText(Path.Combine(dir.Path, f), "x");
        Directory.CreateDirectory(Path.Combine(dir.Path, "ckpt-5_temp"));
        File.WriteAllText(Path.Combine(dir.Path, "ckpt-5_temp", "part-00000-of-00002.index"), "x");
        File.WriteAllText(Path.Combine(dir.Path, "ckpt-5_temp", "part-00001-of-00002.data-00000-of-00001.tempstate9"), "x");
        Directory.CreateDirectory(Path.Combine(dir.Path, "ckpt-6_temp"));   // empty: a chief killed before any part
        Directory.CreateDirectory(Path.Combine(dir.Path, "data_temp"));
        File.WriteAllText(Path.Combine(dir.Path, "data_temp", "readme.md"), "user data");   // not ours: kept

        Assert.Equal(debris.Length + 2, CheckpointDebris.Find(dir.Path).Count);
        var model = new Model(_cpu, 10);
        using var checkpoint = new Checkpoint(("model", model)) { Log = null };
        using var manager = new CheckpointManager(checkpoint, dir.Path, maxToKeep: 3);
        manager.Save();
        foreach (var f in debris) Assert.False(File.Exists(Path.Combine(dir.Path, f)), f);
        foreach (var f in foreign) Assert.True(File.Exists(Path.Combine(dir.Path, f)), f);
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "ckpt-5_temp")));
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "ckpt-6_temp")));
        Assert.True(File.Exists(Path.Combine(dir.Path, "data_temp", "readme.md")));
        Assert.Empty(CheckpointDebris.Find(dir.Path));
    }

    [Fact]
    public void TemporaryFileNames_WhatWeWriteIsWhatWeRecognize()
    {
        for (var i = 0; i < 100; i++)
        {
            Assert.True(TemporaryFileNames.IsBundleTemporary(Path.GetFileName(TemporaryFileNames.ForBundleFile("/d/ckpt-3.index"))));
            Assert.True(TemporaryFileNames.IsBundleTemporary(Path.GetFileName(TemporaryFileNames.ForBundleFile(BundleNaming.DataFile("/d/ckpt-3", 1, 2)))));
            Assert.True(TemporaryFileNames.IsStateFileTemporary(Path.GetFileName(TemporaryFileNames.ForStateFile("/d/checkpoint"))));
        }
        Assert.False(TemporaryFileNames.IsBundleTemporary("ckpt-3.index"));
        Assert.False(TemporaryFileNames.IsBundleTemporary(".index.tempstate1"));
        Assert.False(TemporaryFileNames.IsStateFileTemporary("checkpoint"));
    }
}

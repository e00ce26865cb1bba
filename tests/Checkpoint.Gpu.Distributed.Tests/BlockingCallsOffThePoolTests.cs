using System.Collections.Concurrent;
using CheckpointGpu.Devices;
using CheckpointGpu.Distributed.Worker;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;

namespace CheckpointGpu.Distributed.Tests;

/// <summary>
/// Issue 11 item 6: the blocking file-system calls after an asynchronous save's commit point — the multi-worker merge's
/// renames and fsyncs, the state file, the parts' directory flush — run on the engine's blocking-IO threads, never on a
/// thread-pool worker.
/// </summary>
public sealed class BlockingCallsOffThePoolTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task SaveAsync_TwoWorkers_MergeStateFileAndFlushes_RunOffTheThreadPool()
    {
        using var accelerator = Accelerator.Create(AcceleratorKind.Cpu);
        using var chief = new WorkerModel(accelerator, [0], 2, fill: true);
        using var other = new WorkerModel(accelerator, [1], 2, fill: true);
        var coord = _dir["coord"];
        var chiefStorage = new RecordingStorage();
        var otherStorage = new RecordingStorage();
        var chiefOptions = new CheckpointOptions
        {
            MultiWorker = new WorkerContext(0, 2, coord) { Timeout = TimeSpan.FromSeconds(60) }.With(ownership: chief.Ownership),
            IO = new CheckpointPipelineOptions { Storage = chiefStorage },
        };
        var otherOptions = new CheckpointOptions
        {
            MultiWorker = new WorkerContext(1, 2, coord) { Timeout = TimeSpan.FromSeconds(60) }.With(ownership: other.Ownership),
            IO = new CheckpointPipelineOptions { Storage = otherStorage },
        };
        var chiefHandle = await chief.Checkpoint.SaveAsync(_dir["ckpts/ckpt"], chiefOptions);
        var otherHandle = await other.Checkpoint.SaveAsync(_dir["ckpts/ckpt"], otherOptions);
        await Task.WhenAll(chiefHandle.Completion, otherHandle.Completion).WaitAsync(TimeSpan.FromSeconds(60));

        var merged = Path.GetFullPath(_dir["ckpts/ckpt-1"]);
        using (var reader = TensorBundleReader.Open(merged))
            foreach (var e in reader.Entries) reader.VerifyEntry(e);
        // The chief's merge committed through the storage seam (its index rename is the commit point), then the state file.
        Assert.Contains(chiefStorage.Calls, c => c.Operation == "Move" && c.Path == BundleNaming.IndexFile(merged));
        Assert.Contains(chiefStorage.Calls, c => c.Operation == "Move" && Path.GetFileName(c.Path) == "checkpoint");
        Assert.Contains(chiefStorage.Calls, c => c.Operation == "FlushDirectory" && c.Path.EndsWith("ckpt-1_temp", StringComparison.Ordinal));
        Assert.Contains(otherStorage.Calls, c => c.Operation == "FlushDirectory" && c.Path.EndsWith("ckpt-1_temp", StringComparison.Ordinal));
        var onPool = chiefStorage.Calls.Concat(otherStorage.Calls).Where(c => c.OnThreadPool).Select(c => $"{c.Operation} {c.Path}").ToArray();
        Assert.True(onPool.Length == 0, "blocking calls on thread-pool workers: " + string.Join("; ", onPool));
    }

    /// <summary>Local files, recording every directory-level call and whether it ran on a thread-pool worker.</summary>
    private sealed class RecordingStorage : IShardStorage
    {
        public ConcurrentQueue<(string Operation, string Path, bool OnThreadPool)> Calls { get; } = new();

        private void Record(string operation, string path) => Calls.Enqueue((operation, path, Thread.CurrentThread.IsThreadPoolThread));

        public IShardFile CreateForWrite(string path, bool preferDirectIO)
        {
            Record(nameof(CreateForWrite), path);
            return LocalShardStorage.Instance.CreateForWrite(path, preferDirectIO);
        }

        public IShardFile OpenForRead(string path, bool preferDirectIO) => LocalShardStorage.Instance.OpenForRead(path, preferDirectIO);

        public void Move(string sourcePath, string destinationPath)
        {
            Record(nameof(Move), destinationPath);
            LocalShardStorage.Instance.Move(sourcePath, destinationPath);
        }

        public void Delete(string path)
        {
            Record(nameof(Delete), path);
            LocalShardStorage.Instance.Delete(path);
        }

        public bool Exists(string path) => LocalShardStorage.Instance.Exists(path);

        public void FlushDirectory(string directory)
        {
            Record(nameof(FlushDirectory), directory);
            LocalShardStorage.Instance.FlushDirectory(directory);
        }
    }
}

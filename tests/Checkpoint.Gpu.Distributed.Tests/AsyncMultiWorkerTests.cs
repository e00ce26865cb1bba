using CheckpointGpu.Distributed.Variables;
using CheckpointGpu.TestSupport;
using CheckpointGpu.Devices;
using CheckpointGpu.Distributed.Worker;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;

namespace CheckpointGpu.Distributed.Tests;

/// <summary>
/// Async multi-worker saves inside one process (several ranks as separate models sharing a coordination directory):
/// what only the async path can do — return and snapshot before the other workers report — and its cancellation.
/// The process-level tests (<see cref="MultiWorkerTests"/>) cover N = 1, 2, 4, faults and restores.
/// </summary>
public sealed class AsyncMultiWorkerTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task SaveAsync_PartitionedVariable_SingleProcess_ByteIdenticalToSave()
    {
        // Slices of a partitioned variable used to be refused by the pipeline; now they are TF slice entries as Save writes them.
        using var accelerator = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new WorkerModel(accelerator, [0, 1, 2], 3, fill: true);
        model.Checkpoint.Write(_dir["sync/ckpt"]);
        var handle = await model.Checkpoint.WriteAsync(_dir["async/ckpt"]);
        await handle.Completion;
        Assert.Equal(File.ReadAllBytes(_dir["sync/ckpt.index"]), File.ReadAllBytes(_dir["async/ckpt.index"]));
        Assert.Equal(File.ReadAllBytes(_dir["sync/ckpt.data-00000-of-00001"]), File.ReadAllBytes(_dir["async/ckpt.data-00000-of-00001"]));
        using var reader = TensorBundleReader.Open(_dir["async/ckpt"]);
        Assert.True(reader.TryGetEntry("model/emb/.ATTRIBUTES/VARIABLE_VALUE", out var emb));
        Assert.Equal(3, emb.Slices.Count);
        var region = new byte[WorkerModel.EmbShape.ElementCount * 4];
        reader.ReadSlice("model/emb/.ATTRIBUTES/VARIABLE_VALUE", new TensorSlice([TensorSliceExtent.Full, TensorSliceExtent.Full]), region);
        Assert.Equal(WorkerModel.ExpectedSliceBytes(new TensorSlice([new TensorSliceExtent(0, WorkerModel.EmbShape[0]), TensorSliceExtent.Full])), region);
    }

    [Fact]
    public async Task SaveAsync_ChiefSnapshotsBeforeOtherWorkersReport_CompletesWhenAllHave_MatchesSingleProcess()
    {
        using var accelerator = Accelerator.Create(AcceleratorKind.Cpu);
        using var chief = new WorkerModel(accelerator, [0], 2, fill: true);
        using var other = new WorkerModel(accelerator, [1], 2, fill: true);
        var coord = _dir["coord"];
        var chiefOptions = new CheckpointOptions { MultiWorker = new WorkerContext(0, 2, coord) { Timeout = TimeSpan.FromSeconds(60) }.With(ownership: chief.Ownership) };
        var otherOptions = new CheckpointOptions { MultiWorker = new WorkerContext(1, 2, coord) { Timeout = TimeSpan.FromSeconds(60) }.With(ownership: other.Ownership) };

        var chiefHandle = await chief.Checkpoint.SaveAsync(_dir["ckpts/ckpt"], chiefOptions);
        await chiefHandle.Snapshotted.WaitAsync(TimeSpan.FromSeconds(30));
        // The chief's part is written and reported; it now waits (without a thread) for rank 1, which has not saved yet.
        await WaitForFileAsync(coord, "*.rank-00000.json");
        Assert.False(chiefHandle.Completion.IsCompleted);
        Assert.False(File.Exists(_dir["ckpts/ckpt-1.index"]));

        var otherHandle = await other.Checkpoint.SaveAsync(_dir["ckpts/ckpt"], otherOptions);
        await Task.WhenAll(chiefHandle.Completion, otherHandle.Completion).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(Path.GetFullPath(_dir["ckpts/ckpt-1_temp/part-00000-of-00002"]), chiefHandle.Prefix);
        Assert.Equal(Path.GetFullPath(_dir["ckpts/ckpt-1"]), chiefHandle.CheckpointPrefix);
        Assert.Equal(Path.GetFullPath(_dir["ckpts/ckpt-1"]), otherHandle.CheckpointPrefix);

        Assert.True(CheckpointManager.TryGetLatestCheckpoint(_dir["ckpts"], out var latest));
        Assert.Equal(Path.GetFullPath(_dir["ckpts/ckpt-1"]), Path.GetFullPath(latest));
        Assert.False(Directory.Exists(_dir["ckpts/ckpt-1_temp"]));
        using (var reference = new WorkerModel(accelerator, [0, 1], 2, fill: true))
            reference.Checkpoint.Save(_dir["ref/ckpt"]);
        using var merged = TensorBundleReader.Open(_dir["ckpts/ckpt-1"]);
        using var single = TensorBundleReader.Open(_dir["ref/ckpt-1"]);
        Assert.Equal(2, merged.Header.ShardCount);
        Assert.Equal(single.Entries.Select(e => (e.Key, e.DType, e.Shape, e.Size, e.Crc32C, e.Slices.Count)),
            merged.Entries.Select(e => (e.Key, e.DType, e.Shape, e.Size, e.Crc32C, e.Slices.Count)));
        foreach (var e in merged.Entries) merged.VerifyEntry(e);
    }

    [Fact]
    public async Task RestoreAsync_OfATwoWorkerAsyncCheckpoint_OnThreeWorkers_EachGetsItsRegion()
    {
        using var accelerator = Accelerator.Create(AcceleratorKind.Cpu);
        var coord = _dir["coord"];
        using (var chief = new WorkerModel(accelerator, [0], 2, fill: true))
        using (var other = new WorkerModel(accelerator, [1], 2, fill: true))
        {
            var handles = new[]
            {
                await chief.Checkpoint.SaveAsync(_dir["ckpts/ckpt"], new CheckpointOptions { MultiWorker = new WorkerContext(0, 2, coord).With(ownership: chief.Ownership) }),
                await other.Checkpoint.SaveAsync(_dir["ckpts/ckpt"], new CheckpointOptions { MultiWorker = new WorkerContext(1, 2, coord).With(ownership: other.Ownership) }),
            };
            await Task.WhenAll(handles.Select(h => h.Completion)).WaitAsync(TimeSpan.FromSeconds(60));
        }
        // Three restoring workers: the embedding is re-split 3 ways (regions that straddle the 2 stored slices), read
        // through the pipeline's prefetch (whole tensors) and the slice reader (partitioned ones).
        for (var rank = 0; rank < 3; rank++)
        {
            using var model = new WorkerModel(accelerator, [rank], 3, fill: false);
            var status = await model.Checkpoint.RestoreAsync(_dir["ckpts/ckpt-1"]);
            status.AssertConsumed();
            foreach (var (edge, dtype, shape) in WorkerModel.Variables)
                Assert.Equal(WorkerModel.ExpectedBytes(edge, dtype, shape.ElementCount), model.ByEdge[edge].ReadBytes());
            var part = Assert.Single(model.Embedding.Parts);
            Assert.Equal(WorkerModel.ExpectedSliceBytes(part.Slice), part.Variable.ReadBytes());
            Assert.Equal(42, model.Counter[0]);
        }
    }

    [Fact]
    public async Task RestoreAsync_ModelParallel_ReadsOnlyThisWorkersTensors_NotTheRemotePlaceholders()
    {
        // Saved with both 4 MiB tensors local; restored by a worker that holds "a" and stands in for "b" with a RemoteVariable.
        using var accelerator = Accelerator.Create(AcceleratorKind.Cpu);
        var shape = new TensorShape(1 << 20);
        var aValues = Enumerable.Range(0, 1 << 20).Select(i => i * 0.5f).ToArray();
        {
            var root = new AutoTrackable();
            using var a = Variable.Create(root, "a", accelerator, DType.Float, shape, VariableInitializer.FromHost(span => System.Runtime.InteropServices.MemoryMarshal.AsBytes(aValues.AsSpan()).CopyTo(span)), fullName: "a");
            using var b = Variable.Create(root, "b", accelerator, DType.Float, shape, VariableInitializer.Constant(7f), fullName: "b");
            await using var full = new Checkpoint(("model", root));
            full.Save(_dir["ckpt"]);
        }
        var storage = new FaultInjectingShardStorage(LocalShardStorage.Instance);   // no faults armed: only counts the bytes read
        await using var pipeline = new CheckpointPipeline(accelerator, new CheckpointPipelineOptions { Storage = storage });
        var tree = new AutoTrackable();
        using var local = Variable.Create(tree, "a", accelerator, DType.Float, shape, fullName: "a");
        tree.Track("b", new RemoteVariable("b", DType.Float, shape, ownerRank: 1));
        await using var worker = new Checkpoint(("model", tree));
        var status = await worker.RestoreAsync(_dir["ckpt-1"], new CheckpointOptions { Pipeline = pipeline });
        status.AssertExistingObjectsMatched();
        Assert.Equal(System.Runtime.InteropServices.MemoryMarshal.AsBytes(aValues.AsSpan()).ToArray(), local.ReadBytes());
        // "a" (4 MiB) and the small entries, rounded to O_DIRECT blocks; reading "b" too would be 8 MiB and more.
        Assert.InRange(storage.BytesRead, 4L << 20, (4L << 20) + (64 << 10));
    }

    [Fact]
    public async Task SaveAsync_ChiefCancelledWhileWaiting_AbortsForEveryone_NothingPublished()
    {
        using var accelerator = Accelerator.Create(AcceleratorKind.Cpu);
        using var chief = new WorkerModel(accelerator, [0], 2, fill: true);
        var coord = _dir["coord"];
        var options = new CheckpointOptions { MultiWorker = new WorkerContext(0, 2, coord) { Timeout = TimeSpan.FromSeconds(60) }.With(ownership: chief.Ownership) };
        using var cts = new CancellationTokenSource();
        var handle = await chief.Checkpoint.SaveAsync(_dir["ckpts/ckpt"], options, cts.Token);
        await WaitForFileAsync(coord, "*.rank-00000.json");
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => handle.Completion.WaitAsync(TimeSpan.FromSeconds(30)));

        var verdict = Assert.Single(Directory.EnumerateFiles(coord, "*.verdict.json"));
        Assert.Contains("\"aborted\"", File.ReadAllText(verdict), StringComparison.Ordinal);
        Assert.Contains("cancelled", File.ReadAllText(verdict), StringComparison.Ordinal);
        Assert.False(Directory.Exists(_dir["ckpts/ckpt-1_temp"]));
        Assert.False(File.Exists(_dir["ckpts/ckpt-1.index"]));
        Assert.False(File.Exists(_dir["ckpts/checkpoint"]));
        Assert.Empty(Directory.EnumerateFiles(coord, "*.rank-*"));
    }

    private static async Task WaitForFileAsync(string directory, string pattern)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!(Directory.Exists(directory) && Directory.EnumerateFiles(directory, pattern).Any()))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"no {pattern} in {directory}");
            await Task.Delay(10);
        }
    }
}

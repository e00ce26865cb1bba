using CheckpointGpu.Devices;
using CheckpointGpu.Distributed.Worker;
using CheckpointGpu.Format;

namespace CheckpointGpu.Distributed.Tests;

/// <summary>
/// Multi-worker saves and restores with every variable in ILGPU-CPU device buffers: two ranks (sync and async)
/// merge into the checkpoint one process writes, and three ranks restore their re-split regions from it.
/// </summary>
public sealed class IlgpuMultiWorkerTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task TwoWorkersOnIlgpuCpu_MergedCheckpointMatchesSingleProcess_RestoresOnThreeWorkers(bool async)
    {
        await using var accelerator = Accelerator.Create(AcceleratorKind.IlgpuCpu);
        var coord = _dir["coord"];
        using (var chief = new WorkerModel(accelerator, [0], 2, fill: true))
        using (var other = new WorkerModel(accelerator, [1], 2, fill: true))
        {
            var options = new[] { chief, other }.Select((m, rank) => new CheckpointOptions
            {
                MultiWorker = new WorkerContext(rank, 2, coord) { Timeout = TimeSpan.FromSeconds(60) }.With(ownership: m.Ownership),
            }).ToArray();
            if (async)
            {
                var handles = new[]
                {
                    await chief.Checkpoint.SaveAsync(_dir["ckpts/ckpt"], options[0]),
                    await other.Checkpoint.SaveAsync(_dir["ckpts/ckpt"], options[1]),
                };
                await Task.WhenAll(handles.Select(h => h.Completion)).WaitAsync(TimeSpan.FromSeconds(60));
            }
            else
            {
                await Task.WhenAll(
                    Task.Run(() => chief.Checkpoint.Save(_dir["ckpts/ckpt"], options[0])),
                    Task.Run(() => other.Checkpoint.Save(_dir["ckpts/ckpt"], options[1]))).WaitAsync(TimeSpan.FromSeconds(60));
            }
        }
        using (var reference = new WorkerModel(accelerator, [0, 1], 2, fill: true))
            reference.Checkpoint.Save(_dir["ref/ckpt"]);
        using (var merged = TensorBundleReader.Open(_dir["ckpts/ckpt-1"]))
        using (var single = TensorBundleReader.Open(_dir["ref/ckpt-1"]))
        {
            Assert.Equal(single.Entries.Select(e => (e.Key, e.DType, e.Shape, e.Size, e.Crc32C, e.Slices.Count)),
                merged.Entries.Select(e => (e.Key, e.DType, e.Shape, e.Size, e.Crc32C, e.Slices.Count)));
            foreach (var e in merged.Entries) merged.VerifyEntry(e);
        }
        for (var rank = 0; rank < 3; rank++)
        {
            using var model = new WorkerModel(accelerator, [rank], 3, fill: false);
            var status = await model.Checkpoint.RestoreAsync(_dir["ckpts/ckpt-1"]);
            status.AssertConsumed();
            foreach (var (edge, dtype, shape) in WorkerModel.Variables)
                Assert.Equal(WorkerModel.ExpectedBytes(edge, dtype, shape.ElementCount), model.ByEdge[edge].ReadBytes());
            var part = Assert.Single(model.Embedding.Parts);
            Assert.Equal(WorkerModel.ExpectedSliceBytes(part.Slice), part.Variable.ReadBytes());
        }
    }
}

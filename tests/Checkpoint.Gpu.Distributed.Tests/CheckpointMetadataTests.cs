using CheckpointGpu.Devices;
using CheckpointGpu.Distributed.Worker;
using CheckpointGpu.Format;

namespace CheckpointGpu.Distributed.Tests;

/// <summary>CheckpointMetadata: what MPI restores broadcast (index + object graph read once), and its untrusted-bytes parsing.</summary>
public sealed class CheckpointMetadataTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void RoundTrip_ThenRestoreFromMetadata_WithoutTheIndexFile_RestoresEveryValue()
    {
        using var accelerator = Accelerator.Create(AcceleratorKind.Cpu);
        using (var saved = new WorkerModel(accelerator, [0, 1], 2, fill: true)) saved.Checkpoint.Save(_dir["ckpt"]);
        var prefix = _dir["ckpt-1"];
        var bytes = CheckpointMetadata.Read(prefix).ToBytes();
        Assert.Equal(File.ReadAllBytes(prefix + ".index"), CheckpointMetadata.FromBytes(bytes).IndexBytes.ToArray());
        // The receiving ranks never read the index: hide it.
        File.Move(prefix + ".index", prefix + ".index.hidden");
        using var model = new WorkerModel(accelerator, [1], 2, fill: false);
        model.Checkpoint.RestoreFromMetadata(CheckpointMetadata.FromBytes(bytes)).AssertConsumed();
        foreach (var (edge, dtype, shape) in WorkerModel.Variables)
            Assert.Equal(WorkerModel.ExpectedBytes(edge, dtype, shape.ElementCount), model.ByEdge[edge].ReadBytes());
        foreach (var part in model.Embedding.Parts)
            Assert.Equal(WorkerModel.ExpectedSliceBytes(part.Slice), part.Variable.ReadBytes());
    }

    [Fact]
    public void FromBytes_TruncatedOrForeignBytes_InvalidDataException_CorruptIndex_CheckpointFormatException()
    {
        using var accelerator = Accelerator.Create(AcceleratorKind.Cpu);
        using (var saved = new WorkerModel(accelerator, [0], 1, fill: true)) saved.Checkpoint.Save(_dir["ckpt"]);
        var bytes = CheckpointMetadata.Read(_dir["ckpt-1"]).ToBytes();
        for (var cut = 0; cut < bytes.Length; cut += Math.Max(1, bytes.Length / 50))
        {
            var truncated = bytes.AsSpan(0, cut).ToArray();
            var ex = Record.Exception(() => CheckpointMetadata.FromBytes(truncated));
            Assert.IsType<InvalidDataException>(ex);
        }
        Assert.Throws<InvalidDataException>(() => CheckpointMetadata.FromBytes(new byte[64]));
        // A flipped byte inside the index survives FromBytes (lengths intact) and is caught by the index's CRCs on use.
        var flipped = (byte[])bytes.Clone();
        var prefixLength = BitConverter.ToInt32(flipped, 4);
        flipped[4 + 4 + prefixLength + 4 + 2] ^= 0x10;
        using var model = new WorkerModel(accelerator, [0], 1, fill: false);
        Assert.Throws<CheckpointFormatException>(() => model.Checkpoint.RestoreFromMetadata(CheckpointMetadata.FromBytes(flipped)));
    }
}

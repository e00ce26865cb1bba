using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;

namespace CheckpointGpu.Pipeline.CrashChild;

/// <summary>
/// Saves checkpoints in a loop until killed: step N writes <c>ckpt-N</c> with values that are a pure function of
/// (tensor, N), publishes the state file naming it (keeping the previous one), then deletes <c>ckpt-(N-2)</c>.
/// Usage: <c>CrashChild &lt;directory&gt; [firstStep] [once]</c>. Prints <c>started</c> once the first save begins; with
/// <c>once</c> it saves one checkpoint and exits 0. Like a <c>CheckpointManager</c>, it first takes the directory's
/// <see cref="CheckpointDirectoryLock"/> (held until it dies) and removes the debris of killed saves
/// (<see cref="CheckpointDebris"/>).
/// </summary>
public static class Program
{
    public static readonly long[] Sizes = [1, 4097, 65541, 300_000, 12];

    public static async Task<int> Main(string[] args)
    {
        var dir = args[0];
        var step = args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 1;
        var once = args.Length > 2 && args[2] == "once";
        using var directoryLock = CheckpointDirectoryLock.Acquire(dir);
        CheckpointDebris.Remove(dir);
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        var buffers = Sizes.Select(n => acc.Allocate(n)).ToArray();
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 16384, SlotCount = 3, WriterCount = 2 });
        var started = false;
        while (true)
        {
            for (var i = 0; i < buffers.Length; i++)
            {
                var bytes = Bytes(7, i, step, Sizes[i]);
                acc.DefaultStream.EnqueueCopyFromHost((ReadOnlyMemory<byte>)bytes, buffers[i].AsView());
            }
            await acc.DefaultStream.SynchronizeAsync();
            var items = new List<SaveItem>();
            for (var i = 0; i < buffers.Length; i++)
                items.Add(new SaveItem($"t{i}", DType.UInt8, new TensorShape(Sizes[i]), SaveSource.FromDevice(buffers[i].AsView()), i % 2));
            items.Add(new SaveItem(CheckpointKeys.ObjectGraph, DType.String, TensorShape.Scalar,
                SaveSource.FromEncoded(EncodedTensor.FromStrings([System.Text.Encoding.UTF8.GetBytes($"graph-of-step-{step}")])), 1));
            var prefix = Path.Combine(dir, $"ckpt-{step}");
            var s = step;
            var handle = pipeline.QueueSave(prefix, SavePlan.Create(items, 2), (p, _) =>
            {
                var previous = Path.Combine(dir, $"ckpt-{s - 1}");
                var all = s > 1 && File.Exists(BundleNaming.IndexFile(previous)) ? new[] { previous, p } : new[] { p };
                BundleCommit.PublishState(dir, new CheckpointState(p) { AllModelCheckpointPaths = all });
                if (s > 2) BundleCommit.DeleteCheckpoint(Path.Combine(dir, $"ckpt-{s - 2}"));
                return ValueTask.CompletedTask;
            });
            if (!started)
            {
                started = true;
                Console.Out.WriteLine("started");
                Console.Out.Flush();
            }
            await handle.Completion;
            if (once) return 0;
            step++;
        }
    }

    /// <summary>Same generator as the tests' <c>Data.Bytes</c>.</summary>
    public static byte[] Bytes(int seed, int tensor, int step, long length)
    {
        var b = new byte[length];
        var x = (uint)(seed * 7919 + tensor * 104729 + step * 1299709 + 1);
        for (var i = 0; i < b.Length; i++)
        {
            x ^= x << 13; x ^= x >> 17; x ^= x << 5;
            b[i] = (byte)x;
        }
        return b;
    }
}

using CheckpointGpu.Devices;
using CheckpointGpu.Format;

namespace CheckpointGpu.Pipeline.Tests;

/// <summary>A per-test directory, deleted (with retry) on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ckpt-pipeline-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string Prefix(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        for (var i = 0; i < 5; i++)
        {
            try
            {
                if (Directory.Exists(Path)) Directory.Delete(Path, recursive: true);
                return;
            }
            catch (IOException) { Thread.Sleep(50); }
            catch (UnauthorizedAccessException) { Thread.Sleep(50); }
        }
    }
}

public static class Backends
{
    private static bool IsCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    /// <summary>CPU and ILGPU-CPU always; OpenCL when a platform exists, and always under CI=true (where a missing platform fails).</summary>
    public static IReadOnlyList<AcceleratorKind> KindList =>
        IsCi || Accelerator.IsSupported(AcceleratorKind.OpenCL)
            ? [AcceleratorKind.Cpu, AcceleratorKind.IlgpuCpu, AcceleratorKind.OpenCL]
            : [AcceleratorKind.Cpu, AcceleratorKind.IlgpuCpu];

    /// <summary><see cref="KindList"/> as theory data.</summary>
    public static TheoryData<AcceleratorKind> Kinds
    {
        get
        {
            var data = new TheoryData<AcceleratorKind>();
            foreach (var kind in KindList) data.Add(kind);
            return data;
        }
    }
}

/// <summary>Deterministic tensor bytes: a function of (seed, tensor, step, position).</summary>
public static class Data
{
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

    public static void Upload(Accelerator acc, DeviceBuffer buffer, byte[] bytes)
    {
        if (bytes.Length == 0) return;
        var s = acc.DefaultStream;
        s.EnqueueCopyFromHost((ReadOnlyMemory<byte>)bytes, buffer.AsView());
        s.Synchronize();
    }

    public static byte[] Download(Accelerator acc, DeviceBuffer buffer)
    {
        var b = new byte[buffer.LengthInBytes];
        if (b.Length == 0) return b;
        var s = acc.DefaultStream;
        s.EnqueueCopyToHost(buffer.AsView(), (Memory<byte>)b);
        s.Synchronize();
        return b;
    }
}

/// <summary>A small model: device tensors (float32 / uint8 shapes matching byte sizes), a host tensor and a string tensor.</summary>
public sealed class TestModel : IDisposable
{
    public TestModel(Accelerator acc, long[] deviceSizes, int shardCount = 1, int seed = 1, bool withHostAndString = true)
    {
        Accelerator = acc;
        ShardCount = shardCount;
        Seed = seed;
        Sizes = deviceSizes;
        Buffers = deviceSizes.Select(n => acc.Allocate(n)).ToArray();
        WithExtras = withHostAndString;
    }

    public Accelerator Accelerator { get; }

    public int ShardCount { get; }

    public int Seed { get; }

    public long[] Sizes { get; }

    public DeviceBuffer[] Buffers { get; }

    public bool WithExtras { get; }

    public byte[] HostBytes { get; private set; } = [];

    public byte[][] Strings { get; private set; } = [];

    public static string Key(int i) => $"model/layer{i}/kernel/.ATTRIBUTES/VARIABLE_VALUE";

    /// <summary>Writes step <paramref name="step"/>'s values into the device buffers and host tensor.</summary>
    public void SetStep(int step)
    {
        for (var i = 0; i < Buffers.Length; i++) Data.Upload(Accelerator, Buffers[i], Expected(i, step));
        HostBytes = Data.Bytes(Seed, 1000, step, 24);
        Strings = [System.Text.Encoding.UTF8.GetBytes($"graph-of-step-{step}"), Data.Bytes(Seed, 2000, step, 300)];
    }

    public byte[] Expected(int tensor, int step) => Data.Bytes(Seed, tensor, step, Sizes[tensor]);

    public static (DType, TensorShape) TypeFor(long size) =>
        size % 4 == 0 ? (DType.Float, new TensorShape(size / 4)) : (DType.UInt8, new TensorShape(size));

    /// <summary>The save items in data order: device tensors, then the host tensor, then the string tensor (like TF's object graph, last).</summary>
    public List<SaveItem> Items()
    {
        var items = new List<SaveItem>();
        for (var i = 0; i < Buffers.Length; i++)
        {
            var (dt, shape) = TypeFor(Sizes[i]);
            items.Add(new SaveItem(Key(i), dt, shape, SaveSource.FromDevice(Buffers[i].AsView()), i % ShardCount));
        }
        if (WithExtras)
        {
            items.Add(new SaveItem("save_counter/.ATTRIBUTES/VARIABLE_VALUE", DType.Int64, new TensorShape(3), SaveSource.FromHost(HostBytes), 0));
            items.Add(new SaveItem(CheckpointKeys.ObjectGraph, DType.String, new TensorShape(2), SaveSource.FromEncoded(EncodedTensor.FromStrings(Strings)), ShardCount - 1));
        }
        return items;
    }

    /// <summary>Writes the same items, in the same order, with Format's independent TensorBundleWriter.</summary>
    public void WriteReference(string prefix, int step)
    {
        using var w = new TensorBundleWriter(prefix, new TensorBundleWriterOptions { ShardCount = ShardCount });
        for (var i = 0; i < Buffers.Length; i++)
        {
            var (dt, shape) = TypeFor(Sizes[i]);
            w.Add(Key(i), dt, shape, Expected(i, step), i % ShardCount);
        }
        if (WithExtras)
        {
            w.Add("save_counter/.ATTRIBUTES/VARIABLE_VALUE", DType.Int64, new TensorShape(3), Data.Bytes(Seed, 1000, step, 24), 0);
            w.AddStrings(CheckpointKeys.ObjectGraph, new TensorShape(2),
                [System.Text.Encoding.UTF8.GetBytes($"graph-of-step-{step}"), Data.Bytes(Seed, 2000, step, 300)], ShardCount - 1);
        }
        w.Finish();
    }

    /// <summary>Reads <paramref name="prefix"/> with TensorBundleReader (CRCs verified) and checks every value for <paramref name="step"/>.</summary>
    public void AssertCheckpoint(string prefix, int step)
    {
        using var r = TensorBundleReader.Open(prefix);
        Assert.Equal(ShardCount, r.Header.ShardCount);
        for (var i = 0; i < Buffers.Length; i++)
        {
            var e = r.GetEntry(Key(i));
            var got = new byte[e.Size];
            r.ReadTensor(e, got);
            Assert.True(Expected(i, step).AsSpan().SequenceEqual(got), $"{prefix}: tensor {i} ({Sizes[i]} bytes) differs from step {step}.");
        }
        if (WithExtras)
        {
            var strings = r.ReadStrings(r.GetEntry(CheckpointKeys.ObjectGraph));
            Assert.Equal($"graph-of-step-{step}", System.Text.Encoding.UTF8.GetString(strings[0]));
        }
    }

    public void Dispose()
    {
        foreach (var b in Buffers) b.Dispose();
    }
}

public static class Files
{
    /// <summary>All files of a bundle (index + data), by name.</summary>
    public static void AssertSameBundle(string expectedPrefix, string actualPrefix, int shardCount)
    {
        Assert.Equal(File.ReadAllBytes(BundleNaming.IndexFile(expectedPrefix)), File.ReadAllBytes(BundleNaming.IndexFile(actualPrefix)));
        for (var s = 0; s < shardCount; s++)
        {
            var a = File.ReadAllBytes(BundleNaming.DataFile(expectedPrefix, s, shardCount));
            var b = File.ReadAllBytes(BundleNaming.DataFile(actualPrefix, s, shardCount));
            Assert.Equal(a.Length, b.Length);
            Assert.True(a.AsSpan().SequenceEqual(b), $"data shard {s} differs");
        }
    }

    public static string[] Leftovers(string dir) =>
        Directory.EnumerateFiles(dir).Select(Path.GetFileName).Where(n => n!.Contains(".tempstate", StringComparison.Ordinal) || n.Contains(".tmp", StringComparison.Ordinal)).ToArray()!;
}

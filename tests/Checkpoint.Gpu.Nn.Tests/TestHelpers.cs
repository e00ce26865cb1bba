using System.Runtime.InteropServices;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Nn.Tests;

/// <summary>Accelerators shared by the test run (created lazily, one per backend).</summary>
internal static class Backends
{
    private static readonly Lazy<Accelerator> s_cpu = new(() => Accelerator.Create(AcceleratorKind.Cpu));
    private static readonly Lazy<Accelerator> s_openCl = new(() => Accelerator.Create(AcceleratorKind.OpenCL));
    private static readonly Lazy<Accelerator> s_ilgpuCpu = new(() => Accelerator.Create(AcceleratorKind.IlgpuCpu));

    public static bool IsCi => TfCorpus.IsCi;

    /// <summary>OpenCL runs when a platform exists, and always under CI=true (where a missing platform must fail).</summary>
    public static bool RunOpenCl => IsCi || Accelerator.IsSupported(AcceleratorKind.OpenCL);

    public static Accelerator Get(string name) => name switch
    {
        "cpu" => s_cpu.Value,
        "opencl" => s_openCl.Value,
        "ilgpu-cpu" => s_ilgpuCpu.Value,
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, null),
    };

    public static TheoryData<string> Names()
    {
        var data = new TheoryData<string> { "cpu", "ilgpu-cpu" };
        if (RunOpenCl) data.Add("opencl");
        return data;
    }
}

/// <summary>Skips (outside CI) when no OpenCL platform exists; under CI=true it runs and fails.</summary>
public sealed class OpenClFactAttribute : FactAttribute
{
    public OpenClFactAttribute()
    {
        if (!Backends.RunOpenCl) Skip = "No OpenCL platform available (set CI=true to make this a failure).";
    }
}

internal static class DeviceData
{
    public static DeviceBuffer Upload(Accelerator acc, ReadOnlySpan<float> values)
    {
        var buffer = acc.Allocate(Math.Max(1, values.Length) * sizeof(float));
        if (values.Length > 0)
        {
            var bytes = MemoryMarshal.AsBytes(values).ToArray();
            acc.DefaultStream.EnqueueCopyFromHost(bytes.AsMemory(), buffer.View(0, bytes.Length));
            acc.DefaultStream.Synchronize();
        }
        return buffer;
    }

    public static float[] Download(DeviceBuffer buffer, int count)
    {
        var bytes = new byte[count * sizeof(float)];
        var stream = buffer.Accelerator.DefaultStream;
        stream.EnqueueCopyToHost(buffer.View(0, bytes.Length), bytes.AsMemory());
        stream.Synchronize();
        return MemoryMarshal.Cast<byte, float>(bytes).ToArray();
    }

    public static float[] Random(int count, ulong seed, float scale = 1f)
    {
        var rng = new System.Random((int)seed);
        var values = new float[count];
        for (var i = 0; i < count; i++) values[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return values;
    }
}

internal static class Corpus
{
    public const string Keras3Case = "obj-keras3-tf219-manager-3ckpts";
    public const string Keras2SavedModelCase = "sm-keras-tf23-adam-metrics";

    public static string Keras3(string name) => Path.Combine(TfCorpus.Case(Keras3Case), name);

    public static string Keras2SavedModelPrefix => Path.Combine(TfCorpus.Case(Keras2SavedModelCase), "variables", "variables");

    /// <summary>Asserts the variable's device bytes carry TensorFlow's stored masked CRC32C (and dtype/shape) for <paramref name="key"/>.</summary>
    public static void AssertMatchesTf(string tfPrefix, string key, Variable variable)
    {
        using var reader = TensorBundleReader.Open(tfPrefix);
        var entry = reader.GetEntry(key);
        Assert.Equal(entry.DType, variable.DType);
        Assert.Equal(entry.Shape, variable.Shape);
        var bytes = variable.ReadBytes();
        Assert.True(entry.Crc32C == MaskedCrc32C.ComputeMasked(bytes), $"'{key}': device bytes of {variable} do not match TensorFlow's CRC.");
        var stored = new byte[entry.Size];
        reader.ReadTensor(entry, stored);
        Assert.Equal(stored, bytes);
    }

    public static byte[] ReadTensor(string prefix, string key)
    {
        using var reader = TensorBundleReader.Open(prefix);
        var entry = reader.GetEntry(key);
        var bytes = new byte[entry.Size];
        reader.ReadTensor(entry, bytes);
        return bytes;
    }

    public static float[] ReadFloats(string prefix, string key) => MemoryMarshal.Cast<byte, float>(ReadTensor(prefix, key)).ToArray();

    public static byte[] ReadObjectGraph(string prefix)
    {
        using var reader = TensorBundleReader.Open(prefix);
        return reader.ReadStrings(reader.GetEntry(CheckpointKeys.ObjectGraph))[0];
    }
}

/// <summary>A temporary directory deleted on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir(string tag)
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"nn-{tag}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        for (var attempt = 0; attempt < 3; attempt++)
        {
            try { Directory.Delete(Path, recursive: true); return; }
            catch (IOException) { Thread.Sleep(50); }
        }
    }
}

using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Tests;

internal static class TestUtil
{
    public const string Keras3Case = "obj-keras3-tf219-manager-3ckpts";
    public const string GolfCase = "obj-golf-dqn-2ckpts";
    public const string KerasSavedModelCase = "sm-keras-tf23-adam-metrics";

    public static string Prefix(string caseName, string relative) => Path.Combine(TfCorpus.Case(caseName), relative);

    /// <summary>Asserts the variable's device bytes carry the masked CRC32C TensorFlow stored for <paramref name="key"/>.</summary>
    public static void AssertMatchesTf(string tfPrefix, string key, Variable variable)
    {
        using var reader = TensorBundleReader.Open(tfPrefix);
        var entry = reader.GetEntry(key);
        Assert.Equal(entry.DType, variable.DType);
        Assert.Equal(entry.Shape, variable.Shape);
        var bytes = variable.ReadBytes();
        Assert.Equal(entry.Crc32C, MaskedCrc32C.ComputeMasked(bytes));
    }

    public static byte[] ReadTfTensor(string tfPrefix, string key)
    {
        using var reader = TensorBundleReader.Open(tfPrefix);
        var entry = reader.GetEntry(key);
        var bytes = new byte[entry.Size];
        reader.ReadTensor(entry, bytes);
        return bytes;
    }

    public static byte[] ReadTfObjectGraph(string tfPrefix)
    {
        using var reader = TensorBundleReader.Open(tfPrefix);
        return reader.ReadStrings(reader.GetEntry(CheckpointKeys.ObjectGraph))[0];
    }

    public static void AssertFilesEqual(string expectedPath, string actualPath)
    {
        var expected = File.ReadAllBytes(expectedPath);
        var actual = File.ReadAllBytes(actualPath);
        Assert.True(expected.AsSpan().SequenceEqual(actual),
            $"{Path.GetFileName(actualPath)} differs from TensorFlow's {expectedPath} ({actual.Length} vs {expected.Length} bytes, first difference at {FirstDifference(expected, actual)}).");
    }

    private static int FirstDifference(byte[] a, byte[] b)
    {
        var n = Math.Min(a.Length, b.Length);
        for (var i = 0; i < n; i++) if (a[i] != b[i]) return i;
        return n;
    }
}

/// <summary>Skips (outside CI) when no OpenCL platform exists; under CI=true a missing platform fails.</summary>
public sealed class OpenClCorpusFactAttribute : FactAttribute
{
    public OpenClCorpusFactAttribute()
    {
        Skip = TfCorpus.SkipReason;
        if (Skip is null && !Accelerator.IsSupported(AcceleratorKind.OpenCL))
        {
            if (TfCorpus.IsCi) throw new InvalidOperationException("CI=true but no OpenCL platform is available.");
            Skip = "No OpenCL platform available.";
        }
    }
}

/// <summary>A CPU accelerator per test class.</summary>
public sealed class CpuFixture : IDisposable
{
    public Accelerator Accelerator { get; } = Accelerator.Create(AcceleratorKind.Cpu);

    public void Dispose() => Accelerator.Dispose();
}

/// <summary>
/// The storage seam, observed: <paramref name="onOpen"/> runs whenever a file is opened for reading. The restore engine opens
/// a data file at the start of each read pass — after the matching walk, before any value is read — which is when the
/// variables a walk created (optimizer slots) exist but hold no restored bytes yet.
/// </summary>
internal sealed class OpenObservingStorage(Action onOpen) : IShardStorage
{
    private static IShardStorage Inner => LocalShardStorage.Instance;
    public IShardFile CreateForWrite(string path, bool preferDirectIO) => Inner.CreateForWrite(path, preferDirectIO);
    public IShardFile OpenForRead(string path, bool preferDirectIO)
    {
        onOpen();
        return Inner.OpenForRead(path, preferDirectIO);
    }
    public void Move(string sourcePath, string destinationPath) => Inner.Move(sourcePath, destinationPath);
    public void Delete(string path) => Inner.Delete(path);
    public bool Exists(string path) => Inner.Exists(path);
    public void FlushDirectory(string directory) => Inner.FlushDirectory(directory);
}

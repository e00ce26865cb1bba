using System.Text.Json;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Cli.Tests;

/// <summary>
/// <c>ckpt restore</c> over the TensorFlow-written corpus on CPU, ILGPU-CPU and OpenCL (PoCL): every value arrives by
/// restore-on-create, every value read back from the device matches TensorFlow's stored CRC32C, and
/// <c>--resave</c> reproduces TensorFlow's own files byte for byte for object-based checkpoints.
/// </summary>
public sealed class RestoreCommandTests
{
    public static TheoryData<string, string> PrefixesOnDevices()
    {
        var data = new TheoryData<string, string>();
        foreach (var prefix in TfCorpus.PrefixRows())
            foreach (var device in Devices()) data.Add(prefix, device);
        return data;
    }

    private static IEnumerable<string> Devices()
    {
        yield return "cpu";
        yield return "ilgpu-cpu";
        if (OpenClAvailable()) yield return "opencl";
    }

    private static bool OpenClAvailable()
    {
        var available = Accelerator.IsSupported(AcceleratorKind.OpenCL) && Accelerator.Enumerate(AcceleratorKind.OpenCL).Count > 0;
        if (!available && TfCorpus.IsCi)
            throw new InvalidOperationException("CI=true but no OpenCL platform was found: .ci/run installs pocl-opencl-icd.");
        return available;
    }

    [CorpusTheory]
    [MemberData(nameof(PrefixesOnDevices))]
    public void Restore_EveryCorpusCheckpoint_ConsumedChecksumsMatchAndResaveIsIdentical(string relativePrefix, string device)
    {
        var prefix = Path.Combine(TfCorpus.RequireRoot(), relativePrefix);
        using var reader = TensorBundleReader.Open(prefix);
        using var tmp = new TempDir("restore");
        var copy = tmp.File("copy");
        var r = CkptProcess.Run("restore", prefix, "--device", device, "--resave", copy, "--json");
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        using var doc = JsonDocument.Parse(r.StdOut);
        var root = doc.RootElement;
        Assert.Equal(device, root.GetProperty("device").GetString());
        Assert.True(root.GetProperty("consumed").GetBoolean());
        Assert.Equal(reader.IsObjectBased, root.GetProperty("object_based").GetBoolean());
        var variables = root.GetProperty("variables").EnumerateArray().ToArray();
        Assert.All(variables, v => Assert.True(v.GetProperty("ok").GetBoolean()));
        // Every fixed-size value in the checkpoint was checked on the device, against the CRC TensorFlow stored.
        foreach (var v in variables)
            Assert.Equal($"0x{reader.GetEntry(v.GetProperty("key").GetString()!).Crc32C:x8}", v.GetProperty("device_crc32c").GetString());
        var keys = variables.Select(v => v.GetProperty("key").GetString()!).ToArray();
        Assert.Equal(keys.Length, keys.Distinct(StringComparer.Ordinal).Count());
        Assert.All(keys, k => Assert.True(DTypes.IsFixedSize(reader.GetEntry(k).DType)));
        var expectsVariables = reader.IsObjectBased
            ? reader.Entries.Any(e => e.Key.EndsWith("/.ATTRIBUTES/VARIABLE_VALUE", StringComparison.Ordinal) && DTypes.IsFixedSize(e.DType))
            : reader.Entries.Any(e => e.Key.Length > 0 && DTypes.IsFixedSize(e.DType));
        Assert.Equal(expectsVariables, keys.Length > 0);

        if (!reader.IsObjectBased) return;   // a TF1 name-based checkpoint comes back object-based: not byte-comparable
        Assert.Equal(File.ReadAllBytes(prefix + ".index"), File.ReadAllBytes(copy + ".index"));
        for (var i = 0; i < reader.Header.ShardCount; i++)
            Assert.Equal(File.ReadAllBytes(BundleNaming.DataFile(prefix, i, reader.Header.ShardCount)),
                File.ReadAllBytes(BundleNaming.DataFile(copy, i, reader.Header.ShardCount)));
    }

    [CorpusFact]
    public void Restore_CorruptedValue_ExitsOneNamingKey()
    {
        using var tmp = new TempDir("restore-corrupt");
        var source = Path.Combine(TfCorpus.RequireRoot(), "smv1-tf121-regression/variables/variables");
        var prefix = tmp.File("variables");
        File.Copy(source + ".index", prefix + ".index");
        var data = File.ReadAllBytes(source + ".data-00000-of-00001");
        data[1] ^= 0x40;
        File.WriteAllBytes(prefix + ".data-00000-of-00001", data);
        var r = CkptProcess.Run("restore", prefix, "--device", "cpu");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("checksum", r.StdErr, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Restore_UnknownDevice_ExitsTwo()
    {
        var r = CkptProcess.Run("restore", "x", "--device", "tpu");
        Assert.Equal(2, r.ExitCode);
    }
}

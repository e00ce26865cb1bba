using System.Text.Json;
using CheckpointGpu.Devices;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Cli.Tests;

/// <summary><c>ckpt devices</c> and the <c>--device</c> choices: every kind listed (devices or the reason), unsupported choices exit 2 with it.</summary>
public sealed class DevicesCommandTests
{
    [Fact]
    public void Devices_Json_ListsEveryKindWithDevicesOrTheReason()
    {
        var r = CkptProcess.Run("devices", "--json");
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        using var doc = JsonDocument.Parse(r.StdOut);
        var rows = doc.RootElement.GetProperty("devices").EnumerateArray().ToArray();
        foreach (var (name, kind) in new[] { ("cpu", AcceleratorKind.Cpu), ("opencl", AcceleratorKind.OpenCL), ("ilgpu-cpu", AcceleratorKind.IlgpuCpu), ("cuda", AcceleratorKind.Cuda), ("ilgpu-opencl", AcceleratorKind.IlgpuOpenCL) })
        {
            var mine = rows.Where(x => x.GetProperty("device").GetString() == name).ToArray();
            Assert.NotEmpty(mine);
            var available = Accelerator.IsSupported(kind);
            Assert.All(mine, x => Assert.Equal(available, x.GetProperty("available").GetBoolean()));
            if (available)
                Assert.All(mine, x => Assert.True(x.GetProperty("holds_variables").GetBoolean(), $"{name}: {x}"));
            else
                Assert.Equal(Accelerator.GetUnsupportedReason(kind), Assert.Single(mine).GetProperty("reason").GetString());
        }
        var cpu = rows.Single(x => x.GetProperty("device").GetString() == "ilgpu-cpu");
        Assert.True(cpu.GetProperty("memory_bytes").GetInt64() > 0);
    }

    [Theory]
    [InlineData("cuda")]
    [InlineData("ilgpu-opencl")]
    public void Restore_UnsupportedDevice_ExitsTwoWithTheReason(string device)
    {
        var kind = device == "cuda" ? AcceleratorKind.Cuda : AcceleratorKind.IlgpuOpenCL;
        if (Accelerator.IsSupported(kind)) return;   // a machine that has one: nothing to refuse
        var prefix = Path.Combine(TfCorpus.Root ?? "/nonexistent", "obj-keras3-tf219-manager-3ckpts");
        if (TfCorpus.Root is null) return;
        var r = CkptProcess.Run("restore", prefix, "--device", device);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(Accelerator.GetUnsupportedReason(kind)!, r.StdErr);
    }

    [Fact]
    public void Restore_UnknownDevice_ExitsTwo()
    {
        var r = CkptProcess.Run("restore", "x", "--device", "tpu");
        Assert.Equal(2, r.ExitCode);
    }
}

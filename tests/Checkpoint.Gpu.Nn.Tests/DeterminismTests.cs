using System.Diagnostics;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Nn.TrainChild;
using Xunit.Abstractions;

namespace CheckpointGpu.Nn.Tests;

/// <summary>
/// N steps straight vs. N/2 steps, Save, then a NEW PROCESS that restores before building the model and optimizer
/// (restore-on-create, Keras 2 slots created lazily at its first step) and trains N/2 more: every final variable must
/// be bit-identical.
/// </summary>
public sealed class DeterminismTests(ITestOutputHelper output)
{
    private const int Steps = 24;
    private const ulong Seed = 42;

    public static TheoryData<string, string, string> Cases()
    {
        var data = new TheoryData<string, string, string>
        {
            { "cpu", "keras2", "adam" },
            { "cpu", "keras3", "adam" },
            { "cpu", "keras2", "sgd" },
            { "cpu", "keras3", "sgd" },
            { "ilgpu-cpu", "keras2", "adam" },
            { "ilgpu-cpu", "keras3", "sgd" },
        };
        if (Backends.RunOpenCl)
        {
            data.Add("opencl", "keras2", "adam");
            data.Add("opencl", "keras3", "adam");
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TrainSplitAcrossProcesses_FinalVariablesBitIdentical(string device, string naming, string optimizer)
    {
        var kind = device switch { "opencl" => AcceleratorKind.OpenCL, "ilgpu-cpu" => AcceleratorKind.IlgpuCpu, _ => AcceleratorKind.Cpu };
        var keras = naming == "keras3" ? KerasNaming.Keras3 : KerasNaming.Keras2;
        using var dir = new TempDir("det");

        // Straight: N steps in this process.
        string straight;
        float[] straightLosses;
        using (var session = TrainSession.Create(kind, keras, optimizer, Seed, restoreFrom: null))
        {
            straightLosses = session.Train(Steps);
            straight = session.Checkpoint.Write(dir.File("straight"));
        }

        // Split: N/2 steps here, Save, then N/2 in a new process that restores before building anything.
        string saved;
        float[] firstHalf;
        using (var session = TrainSession.Create(kind, keras, optimizer, Seed, restoreFrom: null))
        {
            firstHalf = session.Train(Steps / 2);
            saved = session.Checkpoint.Save(dir.File("ckpt"));
        }
        Assert.Equal(straightLosses[..(Steps / 2)], firstHalf);
        var resumed = dir.File("resumed");
        var childLosses = RunChild(device, naming, optimizer, saved, Steps / 2, resumed);
        Assert.Equal(straightLosses[(Steps / 2)..].Select(TrainSession.Format), childLosses);
        Assert.True(straightLosses[^1] < straightLosses[0], $"training should reduce the loss ({straightLosses[0]} → {straightLosses[^1]}).");

        // Every tensor of the straight run equals the resumed one, byte for byte (the resumed file also has save_counter).
        using var a = TensorBundleReader.Open(straight);
        using var b = TensorBundleReader.Open(resumed);
        var keys = a.Entries.Select(e => e.Key).Where(k => k.Length > 0 && k != CheckpointKeys.ObjectGraph).ToArray();
        Assert.Equal(keys.Append("save_counter/.ATTRIBUTES/VARIABLE_VALUE").Order(StringComparer.Ordinal),
            b.Entries.Select(e => e.Key).Where(k => k.Length > 0 && k != CheckpointKeys.ObjectGraph).Order(StringComparer.Ordinal));
        Assert.Contains(keys, k => k.Contains(keras == KerasNaming.Keras2 && optimizer == "adam" ? ".OPTIMIZER_SLOT/optimizer/v" : "optimizer/", StringComparison.Ordinal));
        foreach (var key in keys)
        {
            var ea = a.GetEntry(key);
            var eb = b.GetEntry(key);
            Assert.True(ea.Crc32C == eb.Crc32C && ea.Size == eb.Size, $"'{key}' differs between the straight and the resumed run.");
            var bytesA = new byte[ea.Size];
            var bytesB = new byte[eb.Size];
            a.ReadTensor(ea, bytesA);
            b.ReadTensor(eb, bytesB);
            Assert.Equal(bytesA, bytesB);
        }
        output.WriteLine($"{device}/{naming}/{optimizer}: {keys.Length} tensors bit-identical; loss {straightLosses[0]} → {straightLosses[^1]}");
    }

    [Theory]
    [InlineData("adam")]
    [InlineData("sgd")]
    public void IlgpuCpuKernels_SameTrainingAsNativeCpuKernels_BitIdentical(string optimizer)
    {
        // One kernel source on ILGPU's CPU accelerator runs as .NET code: same order of every sum, no FMA contraction,
        // .NET's MathF — so it must compute the native CPU kernels' bits exactly.
        using var dir = new TempDir("det-ilgpu");
        string Run(AcceleratorKind kind, string name)
        {
            using var session = TrainSession.Create(kind, KerasNaming.Keras3, optimizer, Seed, restoreFrom: null);
            session.Train(Steps);
            return session.Checkpoint.Write(dir.File(name));
        }
        using var cpu = TensorBundleReader.Open(Run(AcceleratorKind.Cpu, "cpu"));
        using var ilgpu = TensorBundleReader.Open(Run(AcceleratorKind.IlgpuCpu, "ilgpu"));
        var keys = cpu.Entries.Where(e => e.Key.Length > 0 && e.Key != CheckpointKeys.ObjectGraph).Select(e => e.Key).ToArray();
        Assert.NotEmpty(keys);
        foreach (var key in keys)
            Assert.True(cpu.GetEntry(key).Crc32C == ilgpu.GetEntry(key).Crc32C, $"'{key}' differs between native CPU and ILGPU-CPU kernels");
    }

    private string[] RunChild(string device, string naming, string optimizer, string restore, int steps, string write)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "Checkpoint.Gpu.Nn.TrainChild.dll");
        Assert.True(File.Exists(dll), $"{dll} is missing (the test project references the TrainChild project).");
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[] { dll, "--device", device, "--naming", naming, "--optimizer", optimizer, "--seed", Seed.ToString(System.Globalization.CultureInfo.InvariantCulture),
                     "--restore", restore, "--steps", steps.ToString(System.Globalization.CultureInfo.InvariantCulture), "--write", write })
            psi.ArgumentList.Add(arg);
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail("The child process did not finish within 2 minutes.");
        }
        var err = stderr.GetAwaiter().GetResult();
        var text = stdout.GetAwaiter().GetResult();
        Assert.True(process.ExitCode == 0, $"Child exited with {process.ExitCode}: {err}");
        return text.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using CheckpointGpu.Devices;
using CheckpointGpu.Devices.Tests;
using CheckpointGpu.Format;
using CheckpointGpu.Nn;
using CheckpointGpu.Nn.TrainChild;
using Xunit;

// gpucheck contract --device D          the Devices contract suite (AcceleratorContractTests) for D, one JSON line per test
// gpucheck determinism --device D        24 Adam steps straight vs 12 + Save + 12 in a child process restoring on create
// gpucheck train-child --device D ...    that child (restore before building, train, write)
// Exit codes: 0 all passed, 1 a check failed, 2 usage or device unavailable.
// Why not `dotnet test`: the GPU host has no SDK. xunit 2 has no in-process runner among the served packages, so the
// contract suite's [ContractFact]/[ContractTheory] methods are run here by reflection (data from [InlineData] and
// [MemberData]); the assertions are xunit's own.
try
{
    if (args.Length < 1) return Usage();
    var device = Option(args, "--device") ?? "cuda";
    var kind = ParseDevice(device);
    return args[0] switch
    {
        "contract" => await RunContractAsync(kind, device),
        "determinism" => RunDeterminism(kind, device),
        "train-child" => TrainChild(kind, args),
        _ => Usage(),
    };
}
catch (NotSupportedException ex)
{
    Console.Error.WriteLine($"gpucheck: {ex.Message}");
    return 2;
}

static int Usage()
{
    Console.Error.WriteLine("usage: gpucheck contract|determinism --device cpu|opencl|ilgpu-cpu|cuda|ilgpu-opencl");
    return 2;
}

static string? Option(string[] args, string name)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}

static AcceleratorKind ParseDevice(string device)
{
    var kind = device switch
    {
        "cpu" => AcceleratorKind.Cpu,
        "opencl" => AcceleratorKind.OpenCL,
        "ilgpu-cpu" => AcceleratorKind.IlgpuCpu,
        "cuda" => AcceleratorKind.Cuda,
        "ilgpu-opencl" => AcceleratorKind.IlgpuOpenCL,
        _ => throw new NotSupportedException($"unknown device '{device}'"),
    };
    if (!Accelerator.IsSupported(kind))
        throw new NotSupportedException($"no {device} accelerator: {Accelerator.GetUnsupportedReason(kind)}");
    return kind;
}

static void Line(Dictionary<string, object?> fields) => Console.WriteLine(JsonSerializer.Serialize(fields));

static async Task<int> RunContractAsync(AcceleratorKind kind, string device)
{
    var type = kind switch
    {
        AcceleratorKind.Cpu => typeof(CpuAcceleratorTests),
        AcceleratorKind.OpenCL => typeof(OpenClAcceleratorTests),
        AcceleratorKind.IlgpuCpu => typeof(IlgpuCpuAcceleratorTests),
        AcceleratorKind.Cuda => typeof(CudaAcceleratorTests),
        _ => typeof(IlgpuOpenClAcceleratorTests),
    };
    int passed = 0, failed = 0;
    var methods = type.GetMethods(BindingFlags.Public | BindingFlags.Instance)
        .Where(m => m.GetCustomAttributes().Any(a => a is FactAttribute))
        .OrderBy(m => m.Name, StringComparer.Ordinal);
    foreach (var method in methods)
    {
        foreach (var arguments in Cases(type, method))
        {
            var name = arguments.Length == 0 ? method.Name : $"{method.Name}({string.Join(", ", arguments.Select(a => Convert.ToString(a, CultureInfo.InvariantCulture)))})";
            var clock = Stopwatch.StartNew();
            string? error = null;
            try
            {
                var instance = Activator.CreateInstance(type)!;
                try
                {
                    var result = method.Invoke(instance, arguments);
                    if (result is Task task) await task;
                }
                finally
                {
                    (instance as IDisposable)?.Dispose();
                }
            }
            catch (Exception ex)
            {
                var inner = ex is TargetInvocationException { InnerException: { } i } ? i : ex;
                error = $"{inner.GetType().Name}: {inner.Message}";
            }
            if (error is null) passed++; else failed++;
            Line(new() { ["check"] = "contract", ["device"] = device, ["test"] = name, ["ok"] = error is null, ["seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 3), ["error"] = error });
        }
    }
    Line(new() { ["check"] = "contract-summary", ["device"] = device, ["passed"] = passed, ["failed"] = failed });
    return failed == 0 && passed > 0 ? 0 : 1;
}

static IEnumerable<object?[]> Cases(Type type, MethodInfo method)
{
    var inline = method.GetCustomAttributes<InlineDataAttribute>().ToArray();
    var members = method.GetCustomAttributes<MemberDataAttribute>().ToArray();
    if (inline.Length == 0 && members.Length == 0)
    {
        yield return [];
        yield break;
    }
    foreach (var data in inline)
        foreach (var row in data.GetData(method)) yield return row;
    foreach (var data in members)
    {
        var source = type.GetProperty(data.MemberName, BindingFlags.Public | BindingFlags.Static | BindingFlags.FlattenHierarchy)!;
        foreach (var row in (IEnumerable<object[]>)source.GetValue(null)!) yield return row;
    }
}

static int RunDeterminism(AcceleratorKind kind, string device)
{
    const int steps = 24;
    const ulong seed = 42;
    var dir = Directory.CreateTempSubdirectory("gpucheck-det").FullName;
    try
    {
        string straight;
        float[] losses;
        using (var session = TrainSession.Create(kind, KerasNaming.Keras2, "adam", seed, restoreFrom: null))
        {
            losses = session.Train(steps);
            straight = session.Checkpoint.Write(Path.Combine(dir, "straight"));
        }
        string saved;
        using (var session = TrainSession.Create(kind, KerasNaming.Keras2, "adam", seed, restoreFrom: null))
        {
            session.Train(steps / 2);
            saved = session.Checkpoint.Save(Path.Combine(dir, "ckpt"));
        }
        var resumed = Path.Combine(dir, "resumed");
        var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "train-child", "--device", device, "--restore", saved, "--steps", (steps / 2).ToString(CultureInfo.InvariantCulture), "--write", resumed })
            psi.ArgumentList.Add(a);
        using var child = Process.Start(psi)!;
        var stdout = child.StandardOutput.ReadToEnd();
        var stderr = child.StandardError.ReadToEnd();
        child.WaitForExit();
        var childLosses = stdout.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var lossesEqual = child.ExitCode == 0 && losses[(steps / 2)..].Select(TrainSession.Format).SequenceEqual(childLosses);
        using var a1 = TensorBundleReader.Open(straight);
        var differing = new List<string>();
        if (child.ExitCode == 0)
        {
            using var b1 = TensorBundleReader.Open(resumed);
            foreach (var e in a1.Entries.Where(e => e.Key.Length > 0 && e.Key != CheckpointKeys.ObjectGraph))
                if (!b1.TryGetEntry(e.Key, out var other) || other.Crc32C != e.Crc32C) differing.Add(e.Key);
        }
        var ok = lossesEqual && differing.Count == 0 && losses[^1] < losses[0];
        Line(new()
        {
            ["check"] = "determinism", ["device"] = device, ["ok"] = ok, ["steps"] = steps,
            ["loss_first"] = losses[0], ["loss_last"] = losses[^1], ["resumed_losses_identical"] = lossesEqual,
            ["tensors_differing"] = differing, ["child_exit"] = child.ExitCode, ["child_stderr"] = stderr.Length > 0 ? stderr : null,
        });
        return ok ? 0 : 1;
    }
    finally
    {
        Directory.Delete(dir, recursive: true);
    }
}

static int TrainChild(AcceleratorKind kind, string[] args)
{
    using var session = TrainSession.Create(kind, KerasNaming.Keras2, "adam", 42, Option(args, "--restore"));
    session.Status!.AssertExistingObjectsMatched();
    var losses = session.Train(int.Parse(Option(args, "--steps")!, CultureInfo.InvariantCulture));
    session.Status.AssertConsumed();
    session.Checkpoint.Write(Option(args, "--write")!);
    Console.WriteLine(string.Join(' ', losses.Select(TrainSession.Format)));
    return 0;
}

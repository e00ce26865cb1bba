using CheckpointGpu.Devices;
using CheckpointGpu.Nn;
using CheckpointGpu.Nn.TrainChild;

// Usage: TrainChild --device cpu|opencl|ilgpu-cpu --naming keras2|keras3 --optimizer adam|sgd --seed N --restore PREFIX --steps K --write OUT
// Restores PREFIX before building anything, trains K more steps, asserts every checkpoint value was consumed, writes OUT.
// Exit codes: 0 ok, 1 failure (message on stderr), 2 usage.
// Other modes: `readme-async DIR STEPS` (the README's async example with plain using), `preempt DIR EVERY` (PreemptChild).
if (args is ["readme-async", var readmeDir, var readmeSteps])
    return await ReadmeAsyncExample.RunAsync(readmeDir, int.Parse(readmeSteps, System.Globalization.CultureInfo.InvariantCulture));
if (args is ["exit-pending", var exitDir, var exitMode])
    return await ExitWithPendingSaves.RunAsync(exitDir, exitMode);
if (args is ["preempt-stuck", var stuckDir, var stuckEvery])
    return await PreemptChild.RunAsync(stuckDir, int.Parse(stuckEvery, System.Globalization.CultureInfo.InvariantCulture), stuck: true);
if (args is ["preempt", var preemptDir, var preemptEvery])
    return await PreemptChild.RunAsync(preemptDir, int.Parse(preemptEvery, System.Globalization.CultureInfo.InvariantCulture));
var options = new Dictionary<string, string>(StringComparer.Ordinal);
for (var i = 0; i + 1 < args.Length; i += 2) options[args[i]] = args[i + 1];
string Get(string key) => options.TryGetValue(key, out var v) ? v : throw new ArgumentException($"missing {key}");
try
{
    var device = Get("--device") switch { "opencl" => AcceleratorKind.OpenCL, "ilgpu-cpu" => AcceleratorKind.IlgpuCpu, _ => AcceleratorKind.Cpu };
    var naming = Get("--naming") == "keras3" ? KerasNaming.Keras3 : KerasNaming.Keras2;
    using var session = TrainSession.Create(device, naming, Get("--optimizer"), ulong.Parse(Get("--seed"), System.Globalization.CultureInfo.InvariantCulture), Get("--restore"));
    session.Status!.AssertExistingObjectsMatched();
    // Keras 2 slots do not exist before the first step: their restored values are parked in the optimizer.
    if (session.Optimizer.Naming == KerasNaming.Keras2 && session.Optimizer.SlotNames.Count != 0)
        throw new InvalidOperationException("Keras 2 slots must be created lazily at the first step.");
    var losses = session.Train(int.Parse(Get("--steps"), System.Globalization.CultureInfo.InvariantCulture));
    session.Status.AssertConsumed();   // Keras 2 slots were parked until the first step created them
    session.Checkpoint.Write(Get("--write"));
    Console.WriteLine(string.Join(' ', losses.Select(TrainSession.Format)));
    return 0;
}
catch (ArgumentException ex) when (ex.Message.StartsWith("missing", StringComparison.Ordinal))
{
    Console.Error.WriteLine(ex.Message);
    return 2;
}
catch (Exception ex)
{
    Console.Error.WriteLine(ex);
    return 1;
}

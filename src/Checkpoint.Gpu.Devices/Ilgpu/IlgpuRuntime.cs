using System.Reflection;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Backends.OpenCL;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace CheckpointGpu.Devices.Ilgpu;

/// <summary>ILGPU discovery: which ILGPU devices exist per <see cref="AcceleratorKind"/>, and why a kind is unavailable.</summary>
/// <remarks>
/// Each kind is probed once per process, with a context that registers only that kind's devices (the OpenCL probe
/// starts every OpenCL platform, ~0.5 s on PoCL, so the CPU kind never pays it). Thread-safe.
/// </remarks>
internal static class IlgpuRuntime
{
    private static readonly Lazy<Probe> s_cpu = new(() => ProbeKind(AcceleratorKind.IlgpuCpu));
    private static readonly Lazy<Probe> s_cuda = new(() => ProbeKind(AcceleratorKind.Cuda));
    private static readonly Lazy<Probe> s_openCL = new(() => ProbeKind(AcceleratorKind.IlgpuOpenCL));
    private static int s_resolverInstalled;

    /// <summary>The result of probing one kind: usable devices and, when there are none, the reason.</summary>
    internal sealed record Probe(IReadOnlyList<AcceleratorInfo> Devices, string? UnsupportedReason);

    internal static bool IsIlgpuKind(AcceleratorKind kind) =>
        kind is AcceleratorKind.IlgpuCpu or AcceleratorKind.Cuda or AcceleratorKind.IlgpuOpenCL;

    internal static Probe Get(AcceleratorKind kind) => kind switch
    {
        AcceleratorKind.IlgpuCpu => s_cpu.Value,
        AcceleratorKind.Cuda => s_cuda.Value,
        AcceleratorKind.IlgpuOpenCL => s_openCL.Value,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Not an ILGPU accelerator kind."),
    };

    /// <summary>
    /// ILGPU binds its drivers by the unversioned names <c>libcuda.so</c> and <c>libOpenCL.so</c>, which only the
    /// development packages install; Debian's runtime packages ship <c>libcuda.so.1</c>/<c>libOpenCL.so.1</c>. This
    /// resolver adds the versioned names as fallbacks. Not on WSL, where ILGPU installs a resolver of its own (an
    /// assembly takes only one).
    /// </summary>
    internal static void EnsureNativeResolver()
    {
        if (Interlocked.Exchange(ref s_resolverInstalled, 1) != 0) return;
        if (IsWsl()) return;
        try
        {
            NativeLibrary.SetDllImportResolver(typeof(Context).Assembly, Resolve);
        }
        catch (InvalidOperationException)
        {
            // Somebody (the user's code) installed one already: keep theirs.
        }
    }

    private static nint Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
    {
        string[] candidates = libraryName switch
        {
            "cuda" => ["libcuda.so", "libcuda.so.1"],
            "OpenCL" => ["libOpenCL.so", "libOpenCL.so.1"],
            _ => [],
        };
        foreach (var candidate in candidates)
            if (NativeLibrary.TryLoad(candidate, assembly, searchPath, out var handle)) return handle;
        return 0; // default probing
    }

    private static bool IsWsl()
    {
        try
        {
            return OperatingSystem.IsLinux() && File.Exists("/proc/version") &&
                File.ReadAllText("/proc/version").Contains("microsoft", StringComparison.OrdinalIgnoreCase);
        }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }

    /// <summary>The CPU device our <see cref="AcceleratorKind.IlgpuCpu"/> uses: ILGPU's default simulator shape with one multiprocessor per logical core, so kernels use every core.</summary>
    internal static CPUDevice CpuDevice { get; } = new(numThreadsPerWarp: 4, numWarpsPerMultiprocessor: 4, numMultiprocessors: Math.Max(1, Environment.ProcessorCount));

    /// <summary>Builds a context registering only <paramref name="kind"/>'s devices (with ILGPU.Algorithms enabled).</summary>
    internal static Context CreateContext(AcceleratorKind kind)
    {
        EnsureNativeResolver();
        return Context.Create(builder =>
        {
            _ = kind switch
            {
                AcceleratorKind.IlgpuCpu => builder.CPU(CpuDevice),
                AcceleratorKind.Cuda => builder.Cuda(),
                // Every OpenCL device, so that an unsupported one can be named with the reason ILGPU gives.
                AcceleratorKind.IlgpuOpenCL => builder.OpenCL(_ => true),
                _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Not an ILGPU accelerator kind."),
            };
            builder.EnableAlgorithms();
        });
    }

    /// <summary>The devices of <paramref name="kind"/> in <paramref name="context"/> that ILGPU can open, in ordinal order.</summary>
    internal static List<Device> UsableDevices(Context context, AcceleratorKind kind) => kind switch
    {
        AcceleratorKind.IlgpuCpu => [.. Devices<CPUDevice>(context)],
        AcceleratorKind.Cuda => [.. Devices<CudaDevice>(context)],
        AcceleratorKind.IlgpuOpenCL => [.. Devices<CLDevice>(context).Where(d => OpenCLRefusal(d) is null)],
        _ => [],
    };

    private static List<T> Devices<T>(Context context) where T : Device
    {
        var list = new List<T>();
        foreach (var device in context.Devices)
            if (device is T typed) list.Add(typed);
        return list;
    }

    /// <summary>ILGPU's reason for refusing an OpenCL device (the checks <c>CLAccelerator</c> makes), or null.</summary>
    internal static string? OpenCLRefusal(CLDevice device)
    {
        if (device.CLStdVersion < CLCVersion.CL20)
            return $"'{device.Name}' supports OpenCL C {device.CLStdVersion}; ILGPU needs OpenCL C 2.0 or later";
        if (!device.Capabilities.GenericAddressSpace)
            return $"'{device.Name}': ILGPU throws CapabilityNotSupportedException (GenericAddressSpace feature is not supported on this device)";
        return null;
    }

    internal static AcceleratorInfo Describe(AcceleratorKind kind, int ordinal, Device device)
    {
        long memory = device.MemorySize;
        if (kind == AcceleratorKind.IlgpuCpu || memory <= 0 || memory == long.MaxValue)
            memory = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes; // ILGPU's CPU device reports long.MaxValue
        var vendor = device switch
        {
            CudaDevice => "NVIDIA",
            CLDevice cl => cl.VendorName,
            _ => "host",
        };
        var version = device switch
        {
            CudaDevice cuda => $"ILGPU {typeof(Context).Assembly.GetName().Version}, CUDA driver {cuda.DriverVersion}, {cuda.Architecture}",
            CLDevice cl => $"ILGPU {typeof(Context).Assembly.GetName().Version}, {cl.DeviceVersion}",
            _ => $"ILGPU {typeof(Context).Assembly.GetName().Version}",
        };
        var name = kind == AcceleratorKind.IlgpuCpu
            ? $"ILGPU CPU accelerator ({Environment.ProcessorCount} multiprocessors)"
            : device.Name;
        return new AcceleratorInfo(kind, ordinal, name, memory, memory, vendor, version);
    }

    private static Probe ProbeKind(AcceleratorKind kind)
    {
        try
        {
            using var context = CreateContext(kind);
            var usable = UsableDevices(context, kind);
            if (usable.Count > 0)
                return new Probe([.. usable.Select((d, i) => Describe(kind, i, d))], null);
            return new Probe([], kind switch
            {
                AcceleratorKind.Cuda => "ILGPU found no CUDA device (no NVIDIA GPU, or libcuda.so.1 / the NVIDIA driver is missing)",
                AcceleratorKind.IlgpuOpenCL => Devices<CLDevice>(context).Count == 0
                    ? "ILGPU found no OpenCL device (no platform, or libOpenCL.so.1 / an ICD is missing)"
                    : "ILGPU refuses every OpenCL device: " + string.Join("; ", Devices<CLDevice>(context).Select(OpenCLRefusal)),
                _ => "ILGPU found no CPU device",
            });
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException
            or NotSupportedException or InvalidOperationException or ILGPU.Runtime.AcceleratorException)
        {
            return new Probe([], $"ILGPU could not probe {kind}: {ex.GetType().Name}: {ex.Message}");
        }
    }
}

using CheckpointGpu.Devices;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace CheckpointGpu.Devices.Tests;

/// <summary>Marks a test class as needing a backend; <see cref="ContractFactAttribute"/>/<see cref="ContractTheoryAttribute"/> skip its tests when the backend is missing (outside CI).</summary>
[AttributeUsage(AttributeTargets.Class)]
public sealed class RequiresAcceleratorAttribute(AcceleratorKind kind) : Attribute
{
    public AcceleratorKind Kind { get; } = kind;
}

/// <summary>Skip decisions shared by the attributes. Under <c>CI=true</c> a missing backend never skips: the tests run and fail.</summary>
public static class BackendRequirement
{
    public static bool IsCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// The reason to skip tests needing <paramref name="kind"/>, or null to run them. CI installs PoCL, so a missing
    /// native OpenCL platform fails there; CUDA and ILGPU-OpenCL need hardware CI does not have (ILGPU refuses PoCL),
    /// so they skip everywhere with ILGPU's reason.
    /// </summary>
    public static string? SkipReason(AcceleratorKind kind)
    {
        if (Accelerator.IsSupported(kind)) return null;
        return kind switch
        {
            AcceleratorKind.OpenCL when IsCi => null,
            AcceleratorKind.OpenCL => "No OpenCL platform/device found (install ocl-icd-libopencl1 and pocl-opencl-icd); under CI=true this fails instead.",
            AcceleratorKind.Cuda or AcceleratorKind.IlgpuOpenCL => $"{kind} not available: {Accelerator.GetUnsupportedReason(kind)}.",
            _ when IsCi => null,
            _ => $"{kind} not available: {Accelerator.GetUnsupportedReason(kind)}.",
        };
    }

    /// <summary>Throws with a clear message when a required backend is missing (reached under CI, where nothing skips).</summary>
    public static void Require(AcceleratorKind kind)
    {
        if (!Accelerator.IsSupported(kind))
            throw new InvalidOperationException($"CI=true but the {kind} backend is not available: {Accelerator.GetUnsupportedReason(kind)} (CI must install pocl-opencl-icd and ocl-icd-libopencl1).");
    }

    internal static string? SkipReasonFor(ITestMethod testMethod)
    {
        var type = testMethod.TestClass.Class.ToRuntimeType();
        var requirement = type?.GetCustomAttributes(typeof(RequiresAcceleratorAttribute), inherit: true).OfType<RequiresAcceleratorAttribute>().FirstOrDefault();
        return requirement is null ? null : SkipReason(requirement.Kind);
    }
}

/// <summary>A fact in the abstract contract suite: skipped for a backend class whose backend is missing (outside CI).</summary>
[XunitTestCaseDiscoverer("CheckpointGpu.Devices.Tests.ContractFactDiscoverer", "Checkpoint.Gpu.Devices.Tests")]
[AttributeUsage(AttributeTargets.Method)]
public sealed class ContractFactAttribute : FactAttribute;

/// <summary>A theory in the abstract contract suite: skipped for a backend class whose backend is missing (outside CI).</summary>
[XunitTestCaseDiscoverer("CheckpointGpu.Devices.Tests.ContractTheoryDiscoverer", "Checkpoint.Gpu.Devices.Tests")]
[AttributeUsage(AttributeTargets.Method)]
public sealed class ContractTheoryAttribute : TheoryAttribute;

public sealed class ContractFactDiscoverer(IMessageSink diagnosticMessageSink) : FactDiscoverer(diagnosticMessageSink)
{
    public override IEnumerable<IXunitTestCase> Discover(ITestFrameworkDiscoveryOptions discoveryOptions, ITestMethod testMethod, IAttributeInfo factAttribute)
    {
        var reason = BackendRequirement.SkipReasonFor(testMethod);
        return reason is null
            ? base.Discover(discoveryOptions, testMethod, factAttribute)
            : [new XunitSkippedDataRowTestCase(DiagnosticMessageSink, discoveryOptions.MethodDisplayOrDefault(), discoveryOptions.MethodDisplayOptionsOrDefault(), testMethod, reason)];
    }
}

public sealed class ContractTheoryDiscoverer(IMessageSink diagnosticMessageSink) : TheoryDiscoverer(diagnosticMessageSink)
{
    public override IEnumerable<IXunitTestCase> Discover(ITestFrameworkDiscoveryOptions discoveryOptions, ITestMethod testMethod, IAttributeInfo theoryAttribute)
    {
        var reason = BackendRequirement.SkipReasonFor(testMethod);
        return reason is null
            ? base.Discover(discoveryOptions, testMethod, theoryAttribute)
            : [new XunitSkippedDataRowTestCase(DiagnosticMessageSink, discoveryOptions.MethodDisplayOrDefault(), discoveryOptions.MethodDisplayOptionsOrDefault(), testMethod, reason)];
    }
}

/// <summary>A fact that needs OpenCL: skipped with the reason when no platform exists, except under <c>CI=true</c> where it runs (and fails).</summary>
public sealed class OpenClFactAttribute : FactAttribute
{
    public OpenClFactAttribute() { Skip = BackendRequirement.SkipReason(AcceleratorKind.OpenCL); }
}

/// <summary>A theory that needs OpenCL: skipped with the reason when no platform exists, except under <c>CI=true</c>.</summary>
public sealed class OpenClTheoryAttribute : TheoryAttribute
{
    public OpenClTheoryAttribute() { Skip = BackendRequirement.SkipReason(AcceleratorKind.OpenCL); }
}

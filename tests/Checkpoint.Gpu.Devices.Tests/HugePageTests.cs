using System.Globalization;

namespace CheckpointGpu.Devices.Tests;

/// <summary>
/// Host memory of 2 MiB or more (CPU device buffers, pinned staging buffers; ILGPU's CPU buffers; PoCL's mapped host memory) is backed by transparent
/// huge pages where the kernel allows: O_DIRECT requests from it reach the disk's largest request size (LibC.TryAdviseHugePages).
/// Checked in <c>/proc/self/smaps</c> after the memory is touched, on kernels whose THP mode is <c>madvise</c> or <c>always</c>.
/// Not checked: ILGPU's own CPU device buffers, advised too but allocated by ILGPU from the C heap, which may hand back
/// pages already touched (they stay 4 KiB pages; seen in the full suite: 12 of 16 MiB huge).
/// </summary>
public sealed class HugePageTests
{
    private const long HugePage = 2 << 20;

    [Theory]
    [InlineData(AcceleratorKind.Cpu, false)]
    [InlineData(AcceleratorKind.Cpu, true)]
    [InlineData(AcceleratorKind.IlgpuCpu, true)]
    [InlineData(AcceleratorKind.OpenCL, true)]
    public async Task LargeHostMemory_IsBackedByHugePages(AcceleratorKind kind, bool pinned)
    {
        const int size = 16 << 20;
        using var acc = Accelerator.Create(kind);
        using var buffer = pinned ? null : acc.Allocate(size);
        using var staging = pinned ? acc.AllocatePinned(size) : null;
        nint address;
        if (pinned)
        {
            address = staging!.Pointer;
        }
        else
        {
            Assert.True(buffer!.TryGetHostMemory(0, size, out _, out address));
            // Touch every page (the device's own copy path).
            acc.DefaultStream.EnqueueCopyFromHost(TestData.Random(size, 3), buffer.AsView());
            await acc.DefaultStream.SynchronizeAsync();
        }
        // Our own allocations start on a huge page; ILGPU's buffers and PoCL's host memory need not (only their whole huge
        // pages are advised).
        var ours = kind == AcceleratorKind.Cpu || (pinned && kind != AcceleratorKind.OpenCL);
        if (ours) Assert.Equal(0, address % HugePage);
        var mode = File.Exists("/sys/kernel/mm/transparent_hugepage/enabled") ? File.ReadAllText("/sys/kernel/mm/transparent_hugepage/enabled") : "";
        if (!OperatingSystem.IsLinux() || mode.Contains("[never]", StringComparison.Ordinal) || mode.Length == 0) return; // the kernel offers none
        var hugeKiB = AnonHugePagesKiB(address, size);
        // All of it for our aligned blocks; an unaligned block loses at most one huge page (its two partial ends).
        var wholePages = ours ? size / HugePage : size / HugePage - 1;
        Assert.True(hugeKiB >= wholePages * 2048, $"{hugeKiB} KiB of {size >> 10} KiB on huge pages (THP mode: {mode.Trim()})");
    }

    /// <summary>
    /// <see cref="Accelerator.DeviceMemoryIsHostMemory"/>: true on the CPU accelerators and on PoCL's CPU device (whose
    /// <c>CL_DEVICE_TYPE</c> is CPU), as the restore engine's scratch retention needs.
    /// </summary>
    [Theory]
    [InlineData(AcceleratorKind.Cpu)]
    [InlineData(AcceleratorKind.IlgpuCpu)]
    [InlineData(AcceleratorKind.OpenCL)]
    public void DeviceMemoryIsHostMemory_OnTheHostBackends(AcceleratorKind kind)
    {
        using var acc = Accelerator.Create(kind);
        if (kind == AcceleratorKind.OpenCL && !acc.Info.DriverVersion.Contains("pocl", StringComparison.OrdinalIgnoreCase)
            && !acc.Info.Vendor.Contains("pocl", StringComparison.OrdinalIgnoreCase) && !acc.Name.Contains("pthread", StringComparison.OrdinalIgnoreCase))
            return; // another OpenCL device: its type decides, not checked here
        Assert.True(acc.DeviceMemoryIsHostMemory, $"{kind} '{acc.Name}' ({acc.Info.Vendor}, {acc.Info.DriverVersion})");
    }

    /// <summary>Sums AnonHugePages of the mappings overlapping [address, address + length) in /proc/self/smaps.</summary>
    private static long AnonHugePagesKiB(nint address, long length)
    {
        long total = 0;
        var inRange = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            var dash = line.IndexOf('-', StringComparison.Ordinal);
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            if (dash > 0 && space > dash && ulong.TryParse(line.AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var start)
                && ulong.TryParse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var end))
            {
                inRange = start < (ulong)address + (ulong)length && end > (ulong)address;
                continue;
            }
            if (inRange && line.StartsWith("AnonHugePages:", StringComparison.Ordinal))
                total += long.Parse(line.AsSpan(14).Trim().ToString().Split(' ')[0], CultureInfo.InvariantCulture);
        }
        return total;
    }
}

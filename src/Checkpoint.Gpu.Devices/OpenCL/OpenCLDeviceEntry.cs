namespace CheckpointGpu.Devices.OpenCL;

/// <summary>One enumerated OpenCL device: raw platform and device ids (not reference counted for root devices) plus its description.</summary>
internal sealed record OpenCLDeviceEntry(nint Platform, nint Device, AcceleratorInfo Info, string DeviceVersion);

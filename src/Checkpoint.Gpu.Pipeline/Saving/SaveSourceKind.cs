namespace CheckpointGpu.Pipeline;

/// <summary>Where the bytes of a <see cref="SaveItem"/> come from.</summary>
public enum SaveSourceKind
{
    /// <summary>A range of accelerator memory (<see cref="Devices.DeviceView"/>), copied to the staging ring on the pipeline's stream.</summary>
    Device,

    /// <summary>Host memory holding the tensor's elements (row-major, little-endian); its CRC is computed as it passes.</summary>
    Host,

    /// <summary>An already-encoded payload (DT_STRING / DT_VARIANT, e.g. the object graph) with its entry CRC supplied by the encoder.</summary>
    Encoded,
}

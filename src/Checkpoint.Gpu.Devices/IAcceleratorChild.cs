namespace CheckpointGpu.Devices;

/// <summary>An object whose lifetime the accelerator bounds: disposed with it if the user did not dispose it first.</summary>
internal interface IAcceleratorChild
{
    /// <summary>Releases the object; called by the accelerator during its own disposal. Must not throw.</summary>
    void DisposeFromParent();
}

namespace CheckpointGpu.Pipeline.Staging;

/// <summary>Lifecycle of a staging slot (STYLE B4): Free → Filling → Writing → Free.</summary>
internal enum SlotState
{
    /// <summary>In the free pool; nobody reads or writes it.</summary>
    Free,

    /// <summary>Rented by the copy engine (save) or a reader (restore); device copies or file reads may be in flight into it.</summary>
    Filling,

    /// <summary>Its bytes are complete; a file write (save) or host→device copies (restore) may read it.</summary>
    Writing,
}

using CheckpointGpu.Incremental;
using Google.Protobuf;

namespace CheckpointGpu;

/// <summary>Incremental saves (issue 14): the entry point <see cref="CheckpointManager"/> uses when <see cref="CheckpointManager.IncrementalSaves"/> is set.</summary>
public sealed partial class TrackableSaver
{
    /// <summary>
    /// Writes a checkpoint at exactly <paramref name="prefix"/>, reusing data files of <paramref name="history"/>'s previous
    /// checkpoint whose tensors are all unchanged (see <see cref="IncrementalSaveOptions"/>), then runs the write callbacks.
    /// Multi-worker options fall back to the ordinary (full) save.
    /// </summary>
    internal IncrementalSaveReport WriteIncremental(string prefix, CheckpointOptions options, IncrementalSaveOptions incremental, IncrementalHistory history)
    {
        options.Freeze();
        if (options.MultiWorker is not null)
        {
            WriteCore(prefix, options);
            history.Prefix = null;   // the parts' layout is not tracked: the next save starts over
            return new IncrementalSaveReport(prefix, null, 0, 0, 0, 0, 0, 0, 0);
        }
        var snapshot = ObjectGraphSnapshot.Build(Root, includeSlotVariables: true, options.WriteHasCheckpointValues);
        var graphBytes = snapshot.Proto.ToByteArray();
        var report = IncrementalBundleSave.Write(prefix, snapshot, graphBytes, options, incremental, history);
        foreach (var callback in options.WriteCallbacks) callback(prefix);
        return report;
    }
}

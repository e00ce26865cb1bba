using System.Runtime.InteropServices;

namespace CheckpointGpu.Devices.Cpu;

/// <summary>
/// A real asynchronous ordered queue on the host: enqueue appends a work item and returns; a single drain loop on
/// the thread pool (started when the queue goes from empty to non-empty, ended when it empties) runs items in
/// order and completes their events. No thread is parked while the queue is empty.
/// </summary>
/// <remarks>Copies of at least <see cref="Interop.HostMemory.ParallelThresholdInBytes"/> are split into chunks copied in parallel (<see cref="Interop.HostMemory.Copy"/>).</remarks>
internal sealed unsafe class CpuStream : AcceleratorStream, IThreadPoolWorkItem
{
    private readonly Queue<WorkItem> _queue = new();
    private bool _draining;

    internal CpuStream(CpuAccelerator accelerator) : base(accelerator)
    {
    }

    private enum WorkKind { Copy, Fill, Marker }

    private readonly record struct WorkItem(WorkKind Kind, nint Source, nint Destination, long LengthInBytes, byte Value, DeviceEvent Completion);

    private protected override void EnqueueCopyToHostInternal(DeviceView source, nint hostDestination, DeviceEvent completion) =>
        Post(new WorkItem(WorkKind.Copy, Address(source), hostDestination, source.LengthInBytes, 0, completion));

    private protected override void EnqueueCopyFromHostInternal(nint hostSource, DeviceView destination, DeviceEvent completion) =>
        Post(new WorkItem(WorkKind.Copy, hostSource, Address(destination), destination.LengthInBytes, 0, completion));

    private protected override void EnqueueCopyInternal(DeviceView source, DeviceView destination, DeviceEvent completion) =>
        Post(new WorkItem(WorkKind.Copy, Address(source), Address(destination), source.LengthInBytes, 0, completion));

    private protected override void EnqueueFillInternal(DeviceView destination, byte value, DeviceEvent completion) =>
        Post(new WorkItem(WorkKind.Fill, 0, Address(destination), destination.LengthInBytes, value, completion));

    private protected override void RecordInternal(DeviceEvent completion) =>
        Post(new WorkItem(WorkKind.Marker, 0, 0, 0, 0, completion));

    private protected override void DisposeInternal()
    {
        // Nothing native: the queue is empty once the stream is idle.
    }

    // The caller holds a reference on the buffer's handle (OperationResources), so the address stays valid
    // until the item completes.
    private static nint Address(in DeviceView view) => view.Buffer!.Handle.DangerousGetHandle() + (nint)view.OffsetInBytes;

    private void Post(WorkItem item)
    {
        bool start;
        lock (_queue)
        {
            _queue.Enqueue(item);
            start = !_draining;
            _draining = true;
        }
        if (start) ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
    }

    /// <summary>The drain loop: runs queued items in order until the queue is empty.</summary>
    void IThreadPoolWorkItem.Execute()
    {
        while (true)
        {
            WorkItem item;
            lock (_queue)
            {
                if (!_queue.TryDequeue(out item))
                {
                    _draining = false;
                    return;
                }
            }
            Exception? error = null;
            try
            {
                Run(item);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                error = ex;
            }
            item.Completion.Complete(error);
        }
    }

    private static void Run(in WorkItem item)
    {
        switch (item.Kind)
        {
            case WorkKind.Copy:
                Copy(item.Source, item.Destination, item.LengthInBytes);
                break;
            case WorkKind.Fill:
                NativeMemory.Fill((void*)item.Destination, (nuint)item.LengthInBytes, item.Value);
                break;
            case WorkKind.Marker:
                break;
        }
    }

    private static void Copy(nint source, nint destination, long lengthInBytes) =>
        Interop.HostMemory.Copy((void*)source, (void*)destination, lengthInBytes);
}

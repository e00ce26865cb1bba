using System.Threading.Channels;
using CheckpointGpu.Devices;

namespace CheckpointGpu.Pipeline.Staging;

/// <summary>
/// The pinned staging ring: <c>SlotCount</c> slots of <c>SlotSizeInBytes</c> carved from one
/// <see cref="PinnedHostBuffer"/> that is allocated once per pipeline, pre-faulted, and reused by every save and
/// restore (fresh memory is 2–10× slower to fill, MACHINE-LIMITS.md). Renting waits while every slot is busy:
/// back-pressure from a bounded pool, never unbounded buffering.
/// </summary>
/// <remarks>
/// Exclusive to one operation at a time (the pipeline serializes saves and restore reads). A slot returns to the
/// pool only when both its device copies and its file IO are done; after a failure the owner drains every
/// in-flight operation first and then calls <see cref="ResetAll"/>.
/// </remarks>
internal sealed class StagingRing : IDisposable
{
    private readonly PinnedHostBuffer _buffer;
    private readonly StagingSlot[] _slots;
    private readonly Channel<StagingSlot> _free;

    public StagingRing(Accelerator accelerator, int slotSizeInBytes, int slotCount)
    {
        SlotSizeInBytes = slotSizeInBytes;
        _buffer = accelerator.AllocatePinned((long)slotSizeInBytes * slotCount);
        HostArena.Prefault(_buffer);
        _slots = new StagingSlot[slotCount];
        _free = Channel.CreateBounded<StagingSlot>(new BoundedChannelOptions(slotCount)
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleReader = false,
            SingleWriter = false,
        });
        for (var i = 0; i < slotCount; i++)
        {
            _slots[i] = new StagingSlot(_buffer, (long)i * slotSizeInBytes, slotSizeInBytes, i);
            _free.Writer.TryWrite(_slots[i]);
        }
    }

    public int SlotSizeInBytes { get; }

    public int SlotCount => _slots.Length;

    public long LengthInBytes => _buffer.LengthInBytes;

    /// <summary>Takes a free slot, waiting while all are busy.</summary>
    public async ValueTask<StagingSlot> RentAsync(CancellationToken cancellationToken)
    {
        if (!_free.Reader.TryRead(out var slot))
            slot = await _free.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        slot.Transition(SlotState.Filling);
        return slot;
    }

    /// <summary>Returns a slot whose device copies and file IO have completed.</summary>
    public void Return(StagingSlot slot)
    {
        slot.Transition(SlotState.Free);
        var ok = _free.Writer.TryWrite(slot);
        System.Diagnostics.Debug.Assert(ok, "The free pool cannot be full when a rented slot comes back.");
    }

    /// <summary>Puts every slot back into the pool. Only after all device copies and IO of the owner have drained.</summary>
    public void ResetAll()
    {
        while (_free.Reader.TryRead(out _))
        {
        }
        foreach (var s in _slots)
        {
            s.Transition(SlotState.Free);
            _free.Writer.TryWrite(s);
        }
    }

    public void Dispose() => _buffer.Dispose();
}

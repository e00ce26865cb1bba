namespace CheckpointGpu.Devices;

public abstract partial class Accelerator
{
    private readonly Dictionary<long, string> _leases = [];
    private long _nextLease;

    /// <summary>
    /// Declares that <paramref name="holder"/> is still using this accelerator's memory (for example a checkpoint save
    /// reading device buffers into its staging ring): until the returned lease is disposed, <see cref="Dispose"/> and
    /// <see cref="DisposeAsync"/> throw <see cref="InvalidOperationException"/> naming the holders instead of freeing
    /// memory under them.
    /// </summary>
    /// <param name="holder">Who holds the lease, for the error message (e.g. <c>checkpoint save '/train/ckpt-3'</c>).</param>
    /// <returns>The lease; dispose it (once) when the use ends.</returns>
    /// <exception cref="ArgumentException"><paramref name="holder"/> is empty.</exception>
    /// <exception cref="ObjectDisposedException">The accelerator is disposed.</exception>
    public IDisposable AcquireUseLease(string holder)
    {
        ArgumentException.ThrowIfNullOrEmpty(holder);
        lock (_leases)
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            var id = ++_nextLease;
            _leases[id] = holder;
            return new Lease(this, id);
        }
    }

    private void ThrowIfLeased()
    {
        lock (_leases)
        {
            if (_leases.Count == 0 || IsDisposed) return;
            throw new InvalidOperationException(
                $"{this} cannot be disposed while it is still in use by: {string.Join("; ", _leases.Values)}. "
                + "Dispose (or await DisposeAsync of) the Checkpoint or pipeline that queued the save first; the save is left running and intact.");
        }
    }

    private void ReleaseLease(long id)
    {
        lock (_leases) _leases.Remove(id);
    }

    private sealed class Lease(Accelerator owner, long id) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) owner.ReleaseLease(id);
        }
    }
}

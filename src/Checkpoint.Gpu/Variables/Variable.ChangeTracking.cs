using System.Buffers;
using System.IO.Hashing;

namespace CheckpointGpu;

/// <summary>Change tracking: the modification version and opt-in content hashing used by incremental saves.</summary>
/// <remarks>
/// <para><b>Contract.</b> Every write to the device buffer that this library performs bumps
/// <see cref="ModificationVersion"/> before the write's method returns: <see cref="Assign{T}"/>,
/// <see cref="AssignBytes"/>, initialization (a new variable starts at a fresh version), every restore into the
/// variable (<c>Restore</c>, <c>RestoreAsync</c>, restore-on-create, name-based restores, slices of partitioned
/// variables), and the optimizer update kernels of <c>Checkpoint.Gpu.Nn</c> (<c>Adam</c>, <c>Sgd</c>: the variable and
/// its slot/moment variables). The library cannot see writes made through <see cref="Buffer"/> by the caller's own
/// kernels or copies, nor writes to a bring-your-own ILGPU buffer (<c>Variable.FromIlgpu</c>):
/// after such a write the caller <b>must</b> call <see cref="MarkModified"/> (enqueueing the write first is enough; the
/// save orders its device reads after work already queued).</para>
/// <para><b>If the caller does not.</b> An incremental save (<see cref="IncrementalSaveOptions"/>) considers the variable
/// unchanged and keeps the bytes of the previous checkpoint: the new checkpoint silently holds the stale value. To
/// guard buffers that cannot be tracked, set <see cref="ContentHashing"/> on the variable (or
/// <see cref="IncrementalSaveOptions.HashAllVariables"/>): each incremental save then hashes the device bytes with
/// xxHash3 (System.IO.Hashing) and treats any difference as a change, at the price of one device→host read of the
/// variable per save. Full (non-incremental) saves always read every byte and are unaffected.</para>
/// <para>Versions are unique across all variables of the process (one 64-bit clock), so a different variable object
/// under the same checkpoint key is never mistaken for an unchanged one.</para>
/// </remarks>
public sealed partial class Variable
{
    private static long s_versionClock;
    private long _modificationVersion = NextVersion();

    /// <summary>
    /// The variable's modification version: a process-wide unique number replaced by a fresh, larger one by every
    /// tracked write (see the type's change-tracking remarks). Equal values at two moments mean that no tracked write
    /// happened in between.
    /// </summary>
    public long ModificationVersion => Volatile.Read(ref _modificationVersion);

    /// <summary>
    /// Opt-in content hashing for buffers whose writes cannot be tracked: incremental saves hash the device bytes
    /// (xxHash3, 64 bits) and rewrite the variable when the hash differs, even if <see cref="ModificationVersion"/> did
    /// not move. Default false. Costs one device→host read of <see cref="LengthInBytes"/> bytes per incremental save.
    /// </summary>
    public bool ContentHashing { get; set; }

    /// <summary>
    /// Records that the caller wrote the device buffer directly (own kernels through <see cref="Buffer"/>, or a
    /// bring-your-own ILGPU buffer); replaces <see cref="ModificationVersion"/> with a fresh value. Call it after
    /// enqueueing (or completing) the write and before the next save. Thread-safe.
    /// </summary>
    public void MarkModified() => Volatile.Write(ref _modificationVersion, NextVersion());

    /// <summary>
    /// Hashes the current device bytes with xxHash3 (64-bit, seed 0) through host memory, in chunks of at most 4 MiB.
    /// Waits for work already queued on the accelerator's default stream.
    /// </summary>
    /// <returns>The hash; for an empty variable, the hash of no bytes.</returns>
    /// <exception cref="ObjectDisposedException">The variable is disposed.</exception>
    public ulong ComputeContentHash()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        var hasher = new XxHash3();
        var chunk = (int)Math.Min(Math.Max(LengthInBytes, 1), 4 << 20);
        var buffer = ArrayPool<byte>.Shared.Rent(chunk);
        try
        {
            for (long offset = 0; offset < LengthInBytes; offset += chunk)
            {
                var n = (int)Math.Min(chunk, LengthInBytes - offset);
                CopyToHost(offset, buffer.AsSpan(0, n));
                hasher.Append(buffer.AsSpan(0, n));
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return hasher.GetCurrentHashAsUInt64();
    }

    private static long NextVersion() => Interlocked.Increment(ref s_versionClock);
}

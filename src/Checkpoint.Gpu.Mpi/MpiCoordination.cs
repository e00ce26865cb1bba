using System.Collections.Concurrent;
using System.Globalization;
using CheckpointGpu.Distributed;

namespace CheckpointGpu.Mpi;

/// <summary>
/// Multi-worker coordination over MPI (MPI.NET 1.4.0 on MPICH): the chief gathers every rank's report — status and
/// the part's serialized index — as MPI messages (length, then bytes), merges from memory, and sends its verdict to
/// every rank. The waits poll <c>MPI_Test</c> and sleep rather than spin in a blocking collective, so ranks waiting on
/// an oversubscribed node leave the CPU to the ranks still writing and to the chief's merge. Nothing polls the filesystem; the data still lives on the
/// filesystem the checkpoint is written to, which every rank must share. Use with
/// <c>new WorkerContext(MpiCoordination.Initialize())</c>; launch with <c>mpiexec -n N</c> (MPICH's hydra).
/// </summary>
/// <remarks>
/// <para><b>One MPI thread.</b> <see cref="Initialize"/> starts a dedicated thread that calls <c>MPI_Init_thread</c>
/// (requesting <c>MPI_THREAD_MULTIPLE</c>; MPICH 4 on Debian provides it, see <see cref="ThreadingLevel"/>) and then
/// runs every MPI call of this object in the order they were issued, so the code is correct under
/// <c>FUNNELED</c>/<c>SERIALIZED</c> too, collectives are issued in the same order on every rank, and the asynchronous
/// methods never block a thread-pool thread: they complete when the MPI thread has finished the call. With
/// <c>MULTIPLE</c>, the steps of a save round that lie between the last part being durable and every rank knowing the
/// verdict run on the caller's thread instead, each saving a thread wake-up (milliseconds on a busy node): a report is
/// sent at once, a chief that finished last completes the gather itself, the chief sends the verdict itself, and a
/// waiting rank receives the verdict itself once the chief has announced its merge (<see cref="Gather"/>,
/// <see cref="ShareVerdict"/>). Round messages carry per-round tags, so these never mix with the MPI thread's calls.</para>
/// <para><b>Timeouts.</b> A started MPI collective cannot be cancelled. If one does not complete within its timeout
/// (<see cref="CoordinationRound.Timeout"/> for the gather, twice that for a non-chief's verdict, the argument for a
/// barrier) a watchdog prints the reason to standard error and calls <c>MPI_Abort</c> with <see cref="AbortExitCode"/>,
/// which ends every rank of the job. Cancellation tokens are honoured only before a call starts.</para>
/// <para><b>Failures.</b> A rank that fails its part still takes part in the gather with a failed report
/// (<see cref="ReportFailure"/>), so every rank learns the abort verdict at once. A rank that dies (killed, crashed)
/// makes MPICH's process manager end the whole job; nothing is published for the checkpoint in flight (see the
/// multi-worker README for what a restarted job finds on disk).</para>
/// <para>Thread-safe. Dispose (or process exit) finalizes MPI; it cannot be initialized again in the same process.</para>
/// </remarks>
public sealed partial class MpiCoordination : IWorkerCoordination, IDisposable
{
    /// <summary>Exit code of every rank when a watchdog aborts the job (<c>MPI_Abort</c> errorcode), 75 (EX_TEMPFAIL).</summary>
    public const int AbortExitCode = 75;

    private static readonly Lock s_gate = new();
    private static MpiCoordination? s_instance;

    private readonly BlockingCollection<WorkItem> _queue = new();
    private readonly Thread _thread;
    private readonly ManualResetEventSlim _started = new();
    private Exception? _startError;
    private MPI.Intracommunicator? _world;
    private int _disposed;
    private bool _threadMultiple;
    // Chief: the sequence of the last round whose gather completed (its verdict is the MPI thread's next call).
    private long _gatheredRound;
    // Chief: rounds whose verdict was sent from the caller's thread (SendVerdictHere), not yet passed by the MPI thread's
    // round order. Recorded here instead of queueing a no-op item: waking the MPI thread right after the sends (or at the
    // start of the merge) made it take the CPU from the chief's thread on an oversubscribed node.
    private readonly ConcurrentDictionary<long, byte> _roundsEndedHere = new();
    // Items the MPI thread holds back for round order (read by SendVerdictHere to decide whether to wake it).
    private int _deferredCount;

    private MpiCoordination(string[] args)
    {
        _thread = new Thread(() => Run(args)) { IsBackground = true, Name = "MPI" };
        _thread.Start();
        _started.Wait();
        if (_startError is not null) throw _startError;
    }

    /// <summary>This process's rank in <c>MPI_COMM_WORLD</c>.</summary>
    public int Rank { get; private set; }

    /// <summary>Size of <c>MPI_COMM_WORLD</c>.</summary>
    public int WorldSize { get; private set; }

    /// <summary>Always true: reports carry the parts' indexes, the chief never reads a part's <c>.index</c>.</summary>
    public bool CarriesPartIndexes => true;

    /// <summary>The thread support MPI provided (<c>Multiple</c> with Debian's MPICH 4).</summary>
    public string ThreadingLevel { get; private set; } = "";

    /// <summary>The processor (host) name MPI reports for this rank.</summary>
    public string ProcessorName { get; private set; } = "";

    /// <summary>
    /// Loads MPICH (<see cref="MpichLibrary.Install"/>), initializes MPI on a dedicated thread and returns the process's
    /// coordination (one per process: later calls return the same object until it is disposed). Works under
    /// <c>mpiexec -n N</c> and as a singleton (a plain process is rank 0 of 1).
    /// </summary>
    /// <param name="args">Command-line arguments passed to <c>MPI_Init_thread</c> (MPICH needs none); null for none.</param>
    /// <returns>The coordination.</returns>
    /// <exception cref="DllNotFoundException">MPICH is not installed (the message says <c>apt-get install mpich</c>).</exception>
    /// <exception cref="InvalidOperationException">MPI was already finalized in this process.</exception>
    public static MpiCoordination Initialize(string[]? args = null)
    {
        lock (s_gate)
        {
            if (s_instance is { _disposed: 0 } existing) return existing;
            if (s_instance is not null) throw new InvalidOperationException("MPI was finalized in this process and cannot be initialized again.");
            MpichLibrary.Install();
            s_instance = new MpiCoordination(args ?? []);
            return s_instance;
        }
    }

    private void Run(string[] args)
    {
        MPI.Environment environment;
        try
        {
            environment = new MPI.Environment(ref args, MPI.Threading.Multiple);
            _world = MPI.Communicator.world;
            Rank = _world.Rank;
            WorldSize = _world.Size;
            ThreadingLevel = MPI.Environment.Threading.ToString();
            _threadMultiple = MPI.Environment.Threading == MPI.Threading.Multiple;
            ProcessorName = MPI.Environment.ProcessorName;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            _startError = ex is DllNotFoundException or EntryPointNotFoundException
                ? new DllNotFoundException($"MPI initialization failed ({ex.Message}); install MPICH: 'apt-get install mpich'.", ex)
                : ex;
            _started.Set();
            return;
        }
        _started.Set();
        using (environment)
        {
            // Collectives must be issued in the same order on every rank: save rounds run strictly by sequence number
            // (gather, then verdict), whatever order their calls arrive in (a later save's failure report may come
            // before an earlier save's verdict); other calls run between rounds.
            var deferred = new List<WorkItem>();
            long next = 1;
            var midRound = false;
            foreach (var arrived in _queue.GetConsumingEnumerable())
            {
                if (arrived.Step != Step.Wake) deferred.Add(arrived);
                while (true)
                {
                    // Publish what waits before reading which rounds ended on a caller's thread; SendVerdictHere records
                    // the round before reading the count, so either this sees the round or it sees the count and wakes us.
                    Volatile.Write(ref _deferredCount, deferred.Count);
                    Interlocked.MemoryBarrier();
                    while (_roundsEndedHere.TryRemove(next, out _)) { midRound = false; next++; }
                    if (deferred.FirstOrDefault(Runnable) is not { } item) break;
                    deferred.Remove(item);
                    item.Execute(this);
                    if (item.Step == Step.Gather) midRound = true;
                    else if (item.Step is Step.Verdict or Step.Both) { midRound = false; if (item.Round != 0) next = item.Round + 1; }
                }
            }

            // Disposed with rounds still incomplete (a rank's save never reported): fail their waiters instead of hanging them.
            foreach (var item in deferred)
                item.Fail(new ObjectDisposedException(nameof(MpiCoordination), $"MPI was finalized before round {item.Round}'s earlier calls arrived."));

            bool Runnable(WorkItem item) => item.Step switch
            {
                Step.Free => !midRound,
                Step.Gather or Step.Both => !midRound && (item.Round == next || item.Round == 0),
                _ => midRound && (item.Round == next || item.Round == 0),
            };
        }
    }

    private enum Step
    {
        /// <summary>Not part of a save round (barrier, broadcast): runs between rounds.</summary>
        Free,
        /// <summary>A round's gather; the round's verdict must follow.</summary>
        Gather,
        /// <summary>A round's verdict; ends the round.</summary>
        Verdict,
        /// <summary>A failed rank's gather and verdict together; ends the round.</summary>
        Both,
        /// <summary>Nothing to run: wakes the MPI thread to re-check its held-back items (a round ended on a caller's thread).</summary>
        Wake,
    }

    private sealed class WakeItem() : WorkItem(0, Step.Wake)
    {
        public override void Execute(MpiCoordination owner) { }

        public override void Fail(Exception error) { }
    }

    private abstract class WorkItem(long round, Step step)
    {
        public long Round { get; } = round;

        public Step Step { get; } = step;

        public abstract void Execute(MpiCoordination owner);

        /// <summary>Completes the call with <paramref name="error"/> without running it.</summary>
        public abstract void Fail(Exception error);
    }

    private sealed class WorkItem<T>(string what, TimeSpan timeout, Func<MPI.Intracommunicator, T> call, long round, Step step) : WorkItem(round, step)
    {
        private readonly TaskCompletionSource<T> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly object _gate = new();
        private bool _finished;
        private T? _result;
        private Exception? _error;

        public Task<T> Task => _done.Task;

        public override void Execute(MpiCoordination owner)
        {
            using var watchdog = new Timer(_ => owner.AbortJob($"{what} did not complete within {timeout.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture)} s (a rank is gone, hung or still writing)"),
                null, timeout, Timeout.InfiniteTimeSpan);
            try
            {
                _result = call(owner._world!);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                _error = ex;
            }
            watchdog.Change(Timeout.Infinite, Timeout.Infinite);
            Complete();
        }

        public override void Fail(Exception error)
        {
            _error = error;
            Complete();
        }

        private void Complete()
        {
            lock (_gate)
            {
                _finished = true;
                Monitor.PulseAll(_gate);
            }
            if (_error is null) _done.SetResult(_result!);
            else _done.SetException(_error);
        }

        /// <summary>The result when the call has already completed successfully, without waiting.</summary>
        public bool TryGetResult(out T? result)
        {
            lock (_gate)
            {
                result = _finished && _error is null ? _result : default;
                return _finished && _error is null;
            }
        }

        /// <summary>Synchronous wait: blocks the caller on an event (never on the task) until the MPI thread ran the call.</summary>
        public T Wait()
        {
            lock (_gate)
            {
                while (!_finished) Monitor.Wait(_gate);
            }
            if (_error is not null) throw _error is MultiWorkerCheckpointException or IOException ? _error : new IOException($"MPI: {_error.Message}", _error);
            return _result!;
        }
    }

    private void AbortJob(string reason)
    {
        Console.Error.WriteLine($"checkpoint MPI coordination, rank {Rank} of {WorldSize}: {reason}; calling MPI_Abort({AbortExitCode}) to end the job.");
        Console.Error.Flush();
        if (ThreadingLevel == nameof(MPI.Threading.Multiple)) _world!.Abort(AbortExitCode);
        // Without MPI_THREAD_MULTIPLE, MPI_Abort may not be called from this thread: exiting makes the process manager end the job.
        Environment.Exit(AbortExitCode);
    }

    private WorkItem<T> Enqueue<T>(string what, TimeSpan timeout, Func<MPI.Intracommunicator, T> call, CoordinationRound? round = null, Step step = Step.Free)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var item = new WorkItem<T>($"rank {Rank}: {what}", timeout, call, round?.Sequence ?? 0, step);
        _queue.Add(item);
        return item;
    }

    /// <inheritdoc/>
    /// <remarks>Ends the job (<c>MPI_Abort</c>) instead of throwing <see cref="TimeoutException"/> when a rank does not arrive in time.</remarks>
    public void Barrier(TimeSpan timeout) => Enqueue("MPI_Barrier", timeout, BarrierCall).Wait();

    /// <inheritdoc/>
    public Task BarrierAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Enqueue("MPI_Barrier", timeout, BarrierCall).Task;
    }

    // Tags of the barrier's two messages, above every save round's tags (Tag's maximum is 31999).
    private const int BarrierInTag = 32000;
    private const int BarrierOutTag = 32001;

    // A barrier of point-to-point messages (every rank to the chief, then the chief to every rank) with the same polite
    // waits as the save rounds: MPICH's MPI_Barrier busy-polls, so on an oversubscribed node the ranks that arrived early
    // take the CPU from the rank everyone waits for. Barriers are issued in the same order on every rank and MPI keeps
    // the messages of one (source, tag) in order, so consecutive barriers never mix.
    private static bool BarrierCall(MPI.Intracommunicator world)
    {
        if (world.Size == 1) return true;
        var token = new int[1];
        if (world.Rank != 0)
        {
            Await(world.ImmediateSend(token, 0, BarrierInTag));
            Await(world.ImmediateReceive(0, BarrierOutTag, new int[1]));
            return true;
        }
        var requests = new List<MPI.Request>();
        for (var r = 1; r < world.Size; r++) requests.Add(world.ImmediateReceive(r, BarrierInTag, new int[1]));
        AwaitAll(requests);
        requests.Clear();
        for (var r = 1; r < world.Size; r++) requests.Add(world.ImmediateSend(token, r, BarrierOutTag));
        AwaitAll(requests);
        return true;
    }

    /// <summary>
    /// Broadcasts bytes from rank 0 to every rank (<c>MPI_Bcast</c> of the length, then of the bytes); used to read
    /// checkpoint metadata once and share it (restore metadata).
    /// </summary>
    /// <param name="value">The bytes on rank 0; ignored (may be null) elsewhere.</param>
    /// <param name="timeout">Watchdog: the job ends (<c>MPI_Abort</c>) if the broadcast does not complete in time.</param>
    /// <returns>Rank 0's bytes, on every rank.</returns>
    /// <exception cref="ArgumentNullException">Null <paramref name="value"/> on rank 0.</exception>
    public byte[] Broadcast(byte[]? value, TimeSpan timeout)
    {
        if (Rank == 0) ArgumentNullException.ThrowIfNull(value);
        return Enqueue("MPI_Bcast", timeout, w => BroadcastCall(w, value)).Wait();
    }

    /// <summary>Asynchronous <see cref="Broadcast"/>; runs on the MPI thread.</summary>
    /// <param name="value">The bytes on rank 0.</param>
    /// <param name="timeout">Watchdog timeout.</param>
    /// <param name="cancellationToken">Honoured before the broadcast starts.</param>
    /// <returns>Rank 0's bytes.</returns>
    public Task<byte[]> BroadcastAsync(byte[]? value, TimeSpan timeout, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (Rank == 0) ArgumentNullException.ThrowIfNull(value);
        return Enqueue("MPI_Bcast", timeout, w => BroadcastCall(w, value)).Task;
    }

    private static byte[] BroadcastCall(MPI.Intracommunicator world, byte[]? value)
    {
        var length = world.Rank == 0 ? value!.Length : 0;
        world.Broadcast(ref length, 0);
        var bytes = world.Rank == 0 ? value! : new byte[length];
        if (length > 0) world.Broadcast(ref bytes, 0);
        return bytes;
    }

    /// <inheritdoc/>
    /// <remarks>With <c>MPI_THREAD_MULTIPLE</c> the calling thread starts the round's messages at once: a non-chief rank's
    /// report is sent (<c>MPI_Isend</c>) and the MPI thread only waits for the sends to complete, in round order; the chief
    /// posts its receives and, when every report has already arrived (the chief finished last), completes the gather on
    /// the calling thread, else the MPI thread waits for the rest.</remarks>
    public IReadOnlyList<WorkerReport?>? Gather(CoordinationRound round, WorkerReport report)
    {
        ArgumentNullException.ThrowIfNull(round);
        var (item, done) = StartGather(round, MpiWire.Encode(report));
        return item is null ? done : item.Wait();
    }

    /// <inheritdoc/>
    /// <remarks>As <see cref="Gather"/>.</remarks>
    public Task<IReadOnlyList<WorkerReport?>?> GatherAsync(CoordinationRound round, WorkerReport report, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(round);
        cancellationToken.ThrowIfCancellationRequested();
        var (item, done) = StartGather(round, MpiWire.Encode(report));
        return item is null ? Task.FromResult(done) : item.Task;
    }

    // Either a work item to wait for, or (chief, every report already in) the reports.
    private (WorkItem<IReadOnlyList<WorkerReport?>?>? Item, IReadOnlyList<WorkerReport?>? Done) StartGather(CoordinationRound round, byte[] bytes)
    {
        var what = $"gathering reports for {round.Prefix}";
        if (!_threadMultiple || Volatile.Read(ref _disposed) != 0)
            return (Enqueue(what, round.Timeout, w => (IReadOnlyList<WorkerReport?>?)GatherRound(w, bytes, round.Sequence), round, Step.Gather), null);
        if (Rank == 0) return StartChiefGather(round, bytes, what);
        // The last rank to finish its part is on the critical path: its report leaves now instead of after a wake-up of
        // the MPI thread. Tags are per round, so sending ahead of an unfinished earlier round matches nothing wrongly.
        MPI.Request[] sends;
        try
        {
            sends = StartReportSends(_world!, bytes, round.Sequence);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            return (Enqueue<IReadOnlyList<WorkerReport?>?>(what, round.Timeout, _ => throw new IOException($"MPI: sending the report failed: {ex.Message}", ex), round, Step.Gather), null);
        }
        return (Enqueue(what, round.Timeout, _ =>
        {
            foreach (var r in sends) Await(r);
            return (IReadOnlyList<WorkerReport?>?)null;
        }, round, Step.Gather), null);
    }

    private (WorkItem<IReadOnlyList<WorkerReport?>?>? Item, IReadOnlyList<WorkerReport?>? Done) StartChiefGather(CoordinationRound round, byte[] bytes, string what)
    {
        ChiefGather gather;
        try
        {
            gather = new ChiefGather(_world!, bytes, round.Sequence);
            // A few polls: a report that was sent a moment ago may still be on its way through shared memory.
            for (var i = 0; i < SpinTests; i++)
            {
                if (!gather.Poll())
                {
                    Thread.SpinWait(20);
                    continue;
                }
                var reports = gather.Complete();
                // Completed here, without the MPI thread: the verdict is sent from the caller's thread as well, which then
                // records the round as ended (EndRoundHere), so the MPI thread's later calls keep their order.
                Volatile.Write(ref _gatheredRound, round.Sequence);
                return (null, reports);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The round still ends on the MPI thread; the caller gets the error as from the MPI thread.
            return (Enqueue<IReadOnlyList<WorkerReport?>?>(what, round.Timeout, _ => throw ex, round, Step.Gather), null);
        }
        return (Enqueue(what, round.Timeout, _ =>
        {
            var reports = gather.Wait();
            Volatile.Write(ref _gatheredRound, round.Sequence);
            return (IReadOnlyList<WorkerReport?>?)reports;
        }, round, Step.Gather), null);
    }

    /// <summary>The chief's side of a gather: receives posted at once, completed by polling (caller) or waiting (MPI thread).</summary>
    private sealed class ChiefGather
    {
        private readonly MPI.Intracommunicator _world;
        private readonly byte[] _mine;
        private readonly long _sequence;
        private readonly int[][] _lengths;
        private readonly MPI.Request?[] _lengthRequests;
        private byte[][]? _payloads;
        private MPI.Request?[]? _payloadRequests;

        public ChiefGather(MPI.Intracommunicator world, byte[] mine, long sequence)
        {
            _world = world;
            _mine = mine;
            _sequence = sequence;
            var size = world.Size;
            _lengths = new int[size][];
            _lengthRequests = new MPI.Request?[size];
            for (var r = 1; r < size; r++)
            {
                _lengths[r] = new int[1];
                _lengthRequests[r] = world.ImmediateReceive(r, Tag(sequence, ReportLengthTag), _lengths[r]);
            }
        }

        /// <summary>Tests each pending receive once; true when every report is in.</summary>
        public bool Poll()
        {
            if (!TestAll(_lengthRequests)) return false;
            if (_payloadRequests is null) PostPayloads();
            return TestAll(_payloadRequests!);
        }

        /// <summary>Waits (politely) for every report, then <see cref="Complete"/>.</summary>
        public WorkerReport?[] Wait()
        {
            foreach (var r in _lengthRequests) if (r is not null) Await(r);
            if (_payloadRequests is null) PostPayloads();
            foreach (var r in _payloadRequests!) if (r is not null) Await(r);
            return Complete();
        }

        /// <summary>Every report is in: sends "merging" to every rank and decodes the reports.</summary>
        public WorkerReport?[] Complete()
        {
            // Tell the ranks the verdict is imminent (it follows the merge's fsyncs), so their callers wake now, during
            // the merge, and wait for the verdict themselves on a short poll (see ShareVerdict).
            var merging = new int[1];
            var sends = new List<MPI.Request>();
            for (var r = 1; r < _world.Size; r++) sends.Add(_world.ImmediateSend(merging, r, Tag(_sequence, MergingTag)));
            AwaitAll(sends);
            var reports = new WorkerReport?[_world.Size];
            reports[0] = MpiWire.DecodeReport(_mine, 0);
            for (var r = 1; r < reports.Length; r++) reports[r] = MpiWire.DecodeReport(_payloads![r], r);
            return reports;
        }

        private void PostPayloads()
        {
            var size = _world.Size;
            long total = _mine.Length;
            for (var r = 1; r < size; r++)
            {
                if (_lengths[r][0] < 4) throw new InvalidDataException($"MPI gather: report length {_lengths[r][0]} from rank {r}.");
                total += _lengths[r][0];
            }
            if (total > Array.MaxLength) throw new InvalidDataException($"MPI gather: {total} bytes of reports exceed one array.");
            _payloads = new byte[size][];
            _payloadRequests = new MPI.Request?[size];
            for (var r = 1; r < size; r++)
            {
                _payloads[r] = new byte[_lengths[r][0]];
                _payloadRequests[r] = _world.ImmediateReceive(r, Tag(_sequence, ReportTag), _payloads[r]);
            }
        }

        private static bool TestAll(MPI.Request?[] requests)
        {
            var all = true;
            for (var i = 0; i < requests.Length; i++)
            {
                if (requests[i] is null) continue;
                if (requests[i]!.Test() is not null) requests[i] = null;
                else all = false;
            }
            return all;
        }
    }

    private static MPI.Request[] StartReportSends(MPI.Intracommunicator world, byte[] mine, long sequence) =>
        [world.ImmediateSend(new[] { mine.Length }, 0, Tag(sequence, ReportLengthTag)), world.ImmediateSend(mine, 0, Tag(sequence, ReportTag))];

    // Save rounds use point-to-point messages instead of MPI_Gather/MPI_Bcast so that a rank waiting for the others
    // (early ranks while later ones still write their parts, every rank while the chief merges) does not busy-poll a
    // core: MPICH's blocking calls spin, which on oversubscribed nodes steals the CPU the writers and the merge need.
    // Waits poll MPI_Test, spinning a few microseconds, then sleeping 100 us between tests (see Await).
    // Tags: five per round (report length, report, verdict length, verdict, "merging"); rounds never overlap on a rank,
    // and MPI keeps messages of one (source, tag) in order. 5 * 6000 stays below the barrier's tags and the smallest
    // MPI_TAG_UB the standard allows (32767).
    private static int Tag(long sequence, int which) => (int)(sequence % 6000) * 5 + which;

    private const int ReportLengthTag = 0, ReportTag = 1, VerdictLengthTag = 2, VerdictTag = 3, MergingTag = 4;

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "usleep")]
    private static partial int USleep(uint microseconds);

    // The polite wait (measured in perf/Checkpoint.Gpu.Benchmarks/EndToEnd/RESULTS.md, "MPI waits without busy
    // barriers"): a few microseconds of spinning catch a message that is already there; then MPI_Test every ShortSleep
    // (usleep: a sleeping rank leaves the CPU to the ranks that write or merge, and a woken sleeper is scheduled
    // promptly), and every LongSleep once a wait has lasted LongAfter (a rank waiting for others to write their parts:
    // ~1 % of a core instead of ~5 %, at most 0.5 ms late). Thread.Sleep(1) and Thread.Yield were measured before:
    // 1 ms sleeps cost a millisecond per hop, and yielding among four ranks on two cores hands the CPU to the other
    // waiters for a whole time slice.
    private const uint ShortSleepMicroseconds = 100;
    private const uint LongSleepMicroseconds = 500;
    private const long LongAfterMilliseconds = 200;
    private const int SpinTests = 20;

    // A wait that is known to end soon (the verdict, once the chief announced its merge): usleep(ImminentSleep) between
    // tests for the first ImminentFor, then the ordinary polite steps.
    private const uint ImminentSleepMicroseconds = 20;
    private const long ImminentForMilliseconds = 50;

    private static void Await(MPI.Request request, bool imminent = false, Action? onOverdue = null, long overdueAfterMilliseconds = long.MaxValue)
    {
        var tests = 0;
        long started = 0;
        while (request.Test() is null)
        {
            if (++tests < SpinTests)
            {
                Thread.SpinWait(20);
                continue;
            }
            if (started == 0) started = Environment.TickCount64;
            var waited = Environment.TickCount64 - started;
            if (waited > overdueAfterMilliseconds) onOverdue?.Invoke();
            _ = USleep(imminent && waited < ImminentForMilliseconds ? ImminentSleepMicroseconds
                : waited < LongAfterMilliseconds ? ShortSleepMicroseconds : LongSleepMicroseconds);
        }
    }

    private static void AwaitAll(List<MPI.Request> requests)
    {
        foreach (var r in requests) Await(r);
    }

    private WorkerReport?[]? GatherRound(MPI.Intracommunicator world, byte[] mine, long sequence)
    {
        var reports = GatherCall(world, mine, sequence);
        if (world.Rank == 0) Volatile.Write(ref _gatheredRound, sequence);
        return reports;
    }

    private static WorkerReport?[]? GatherCall(MPI.Intracommunicator world, byte[] mine, long sequence)
    {
        if (world.Rank != 0)
        {
            foreach (var r in StartReportSends(world, mine, sequence)) Await(r);
            return null;
        }
        return new ChiefGather(world, mine, sequence).Wait();
    }

    private static CoordinationVerdict? VerdictCall(MPI.Intracommunicator world, byte[]? chiefBytes, long sequence)
    {
        if (world.Rank == 0)
        {
            var requests = new List<MPI.Request>();
            for (var r = 1; r < world.Size; r++)
            {
                requests.Add(world.ImmediateSend(new[] { chiefBytes!.Length }, r, Tag(sequence, VerdictLengthTag)));
                requests.Add(world.ImmediateSend(chiefBytes, r, Tag(sequence, VerdictTag)));
            }
            AwaitAll(requests);
            return MpiWire.DecodeVerdict(chiefBytes);
        }
        Await(world.ImmediateReceive(0, Tag(sequence, MergingTag), new int[1]));
        var length = new int[1];
        Await(world.ImmediateReceive(0, Tag(sequence, VerdictLengthTag), length));
        if (length[0] is < 1 or > 1 << 24) throw new InvalidDataException($"MPI verdict: length {length[0]}.");
        var bytes = new byte[length[0]];
        Await(world.ImmediateReceive(0, Tag(sequence, VerdictTag), bytes));
        return MpiWire.DecodeVerdict(bytes);
    }

    /// <inheritdoc/>
    /// <remarks>
    /// On the chief the verdict is sent from the calling thread when the round's gather has completed (the usual case:
    /// no hand-off to the MPI thread between the commit point and the sends). On other ranks with
    /// <see cref="CoordinationRound.WaitForVerdict"/>, the MPI thread waits (politely) for the chief's "merging" message
    /// that ends its gather; the caller then receives the verdict itself on a short poll (20 µs sleeps), so the verdict's
    /// arrival is not followed by a second thread hand-off. Both need <c>MPI_THREAD_MULTIPLE</c>; otherwise every call
    /// runs on the MPI thread.
    /// </remarks>
    public CoordinationVerdict? ShareVerdict(CoordinationRound round, CoordinationVerdict? verdict)
    {
        ArgumentNullException.ThrowIfNull(round);
        if (Rank == 0 && CanSendVerdictHere(round)) return SendVerdictHere(round, verdict);
        if (Rank != 0 && round.WaitForVerdict && _threadMultiple)
        {
            EnqueueMerging(round).Wait();
            return ReceiveVerdictHere(round);
        }
        var item = EnqueueVerdict(round, verdict);
        return Rank != 0 && !round.WaitForVerdict ? NotWaiting(item) : item.Wait();
    }

    /// <inheritdoc/>
    /// <remarks>
    /// As <see cref="ShareVerdict"/>. On a non-chief rank the returned task's continuation is woken when the chief starts
    /// merging and then polls for the verdict on that thread: it holds a thread-pool thread for the chief's merge (its
    /// fsyncs, milliseconds), never while other ranks still write their parts.
    /// </remarks>
    public async Task<CoordinationVerdict?> ShareVerdictAsync(CoordinationRound round, CoordinationVerdict? verdict, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(round);
        cancellationToken.ThrowIfCancellationRequested();
        if (Rank == 0 && CanSendVerdictHere(round)) return SendVerdictHere(round, verdict);
        if (Rank != 0 && round.WaitForVerdict && _threadMultiple)
        {
            await EnqueueMerging(round).Task.ConfigureAwait(false);
            return ReceiveVerdictHere(round);
        }
        var item = EnqueueVerdict(round, verdict);
        return Rank != 0 && !round.WaitForVerdict ? NotWaiting(item) : await item.Task.ConfigureAwait(false);
    }

    private WorkItem<CoordinationVerdict?> EnqueueVerdict(CoordinationRound round, CoordinationVerdict? verdict)
    {
        var bytes = Rank == 0 ? MpiWire.Encode(verdict ?? throw new ArgumentNullException(nameof(verdict))) : null;
        return Enqueue($"broadcasting the verdict for {round.Prefix}", Rank == 0 ? round.Timeout : 2 * round.Timeout, w => VerdictCall(w, bytes, round.Sequence), round, Step.Verdict);
    }

    // The chief's gather for this round has completed (on the MPI thread, or on the caller's); no other call of a save
    // round can run on the MPI thread before this round ends (rounds run in order), so the caller may send the verdict.
    // Barriers and broadcasts issued meanwhile by other threads may run on the MPI thread concurrently: MPI_THREAD_MULTIPLE
    // allows it, and they match by their own tags, or as collectives in their own issue order.
    private bool CanSendVerdictHere(CoordinationRound round) => _threadMultiple && round.Sequence != 0 && Volatile.Read(ref _gatheredRound) == round.Sequence;

    private CoordinationVerdict? SendVerdictHere(CoordinationRound round, CoordinationVerdict? verdict)
    {
        var bytes = MpiWire.Encode(verdict ?? throw new ArgumentNullException(nameof(verdict)));
        try
        {
            _ = VerdictCall(_world!, bytes, round.Sequence);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            throw ex is IOException ? ex : new IOException($"MPI: {ex.Message}", ex);
        }
        finally
        {
            EndRoundHere(round.Sequence);
        }
        return verdict;
    }

    // The round's verdict was sent from this thread: the MPI thread passes the round when it next looks at its queue (later
    // calls keep their order) and is woken only when it holds back items for round order — not on every save, where
    // the wake-up landed right after the sends and took the CPU from the chief's thread on an oversubscribed node.
    private void EndRoundHere(long sequence)
    {
        _roundsEndedHere[sequence] = 0;
        Interlocked.MemoryBarrier();
        if (Volatile.Read(ref _deferredCount) == 0 || Volatile.Read(ref _disposed) != 0) return;
        try
        {
            _queue.Add(new WakeItem());
        }
        catch (InvalidOperationException)
        {
            // Disposed meanwhile: the MPI thread fails what it held back.
        }
    }

    // Non-chief: the MPI thread waits for the chief's "merging" message (which follows every report's arrival).
    private WorkItem<bool> EnqueueMerging(CoordinationRound round) =>
        Enqueue($"waiting for the chief's merge of {round.Prefix}", 2 * round.Timeout, w =>
        {
            Await(w.ImmediateReceive(0, Tag(round.Sequence, MergingTag), new int[1]));
            return true;
        }, round, Step.Verdict);

    // Non-chief, after "merging": the verdict follows within the chief's merge; receive it on this thread.
    private CoordinationVerdict? ReceiveVerdictHere(CoordinationRound round)
    {
        var overdue = (long)Math.Min(2 * round.Timeout.TotalMilliseconds, long.MaxValue / 2);
        void Overdue() => AbortJob($"rank {Rank}: the verdict for {round.Prefix} did not arrive within {(overdue / 1000.0).ToString("0.###", CultureInfo.InvariantCulture)} s of the chief's merge");
        try
        {
            var world = _world!;
            var length = new int[1];
            Await(world.ImmediateReceive(0, Tag(round.Sequence, VerdictLengthTag), length), imminent: true, Overdue, overdue);
            if (length[0] is < 1 or > 1 << 24) throw new InvalidDataException($"MPI verdict: length {length[0]}.");
            var bytes = new byte[length[0]];
            Await(world.ImmediateReceive(0, Tag(round.Sequence, VerdictTag), bytes), imminent: true, Overdue, overdue);
            return MpiWire.DecodeVerdict(bytes);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            throw ex is IOException ? ex : new IOException($"MPI: {ex.Message}", ex);
        }
    }

    // WaitForVerdict false (WorkerContext.WaitForPublished) on a non-chief: the verdict is still received, on the MPI
    // thread before any later round, but the caller does not wait for it; the verdict if it already arrived, else null.
    private static CoordinationVerdict? NotWaiting(WorkItem<CoordinationVerdict?> item)
    {
        if (item.TryGetResult(out var known)) return known;
        _ = item.Task.ContinueWith(t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return null;
    }

    /// <inheritdoc/>
    /// <remarks>Queues the gather (with the failed report) and the verdict on the MPI thread and returns; on the chief the
    /// verdict is an abort naming every failed rank.</remarks>
    public void ReportFailure(CoordinationRound round, WorkerReport failure)
    {
        ArgumentNullException.ThrowIfNull(round);
        ArgumentNullException.ThrowIfNull(failure);
        if (Volatile.Read(ref _disposed) != 0) return;
        var bytes = MpiWire.Encode(failure);
        var item = Enqueue($"reporting a failure for {round.Prefix}", 2 * round.Timeout, w =>
        {
            var reports = GatherCall(w, bytes, round.Sequence);
            byte[]? verdict = null;
            if (w.Rank == 0)
            {
                var failed = reports!.Where(r => r is null || !r.Succeeded).Select((r, i) => r?.Rank ?? i).ToArray();
                var reason = string.Join("; ", reports!.Where(r => r is { Succeeded: false }).Select(r => $"rank {r!.Rank} failed: {r.Error ?? "no detail"}"));
                verdict = MpiWire.Encode(new CoordinationVerdict { Published = false, Reason = reason, FailedRanks = failed });
            }
            VerdictCall(w, verdict, round.Sequence);
            return true;
        }, round, Step.Both);
        // Observe the outcome so a transport error is not an unobserved task exception.
        _ = item.Task.ContinueWith(t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>Runs the calls already queued, then finalizes MPI (<c>MPI_Finalize</c>) on the MPI thread and ends it.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _queue.CompleteAdding();
        _thread.Join();
        _queue.Dispose();
        _started.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => $"MPI rank {Rank} of {WorldSize} on {ProcessorName} (threading {ThreadingLevel})";
}

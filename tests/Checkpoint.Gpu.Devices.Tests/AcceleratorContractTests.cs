using System.Runtime.InteropServices;
using CheckpointGpu.Devices;

namespace CheckpointGpu.Devices.Tests;

/// <summary>
/// The behaviour every backend must show (STYLE B6). One subclass per backend supplies <see cref="CreateAccelerator"/>;
/// a subclass marked <see cref="RequiresAcceleratorAttribute"/> is skipped when its backend is missing (outside CI).
/// </summary>
public abstract class AcceleratorContractTests : IDisposable
{
    private readonly List<IDisposable> _owned = [];

    protected AcceleratorContractTests()
    {
        Accelerator = Track(CreateAccelerator());
    }

    protected Accelerator Accelerator { get; }

    protected abstract Accelerator CreateAccelerator();

    protected T Track<T>(T disposable) where T : IDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }

    public void Dispose()
    {
        for (var i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
        GC.SuppressFinalize(this);
    }

    // (9 << 20) + 4099: above the 8 MiB split threshold of the host-memory backends' parallel copy, with a ragged last chunk.
    public static TheoryData<int> OddSizes => new() { 1, 17, 1025, 8197, (1 << 20) + 3, (9 << 20) + 4099 };

    // ------------------------------------------------------------------ discovery

    [ContractFact]
    public void Properties_AfterCreate_DescribeTheDevice()
    {
        Assert.False(string.IsNullOrWhiteSpace(Accelerator.Name));
        Assert.True(Accelerator.MemorySizeInBytes > 0);
        Assert.InRange(Accelerator.MaxAllocationSizeInBytes, 1, Accelerator.MemorySizeInBytes);
        Assert.True(Accelerator.IsSupported(Accelerator.Kind));
        Assert.Contains(Accelerator.Enumerate(Accelerator.Kind), i => i.Name == Accelerator.Name);
    }

    [ContractFact]
    public void Create_OrdinalPastDeviceCount_ThrowsArgumentOutOfRange()
    {
        var count = Accelerator.Enumerate(Accelerator.Kind).Count;
        Assert.Throws<ArgumentOutOfRangeException>(() => Accelerator.Create(Accelerator.Kind, count));
        Assert.Throws<ArgumentOutOfRangeException>(() => Accelerator.Create(Accelerator.Kind, -1));
    }

    // ------------------------------------------------------------------ host memory

    /// <summary>
    /// Buffers of the host-memory backends (native CPU, ILGPU's CPU) expose their bytes: what is written through
    /// <see cref="DeviceBuffer.TryGetHostMemory"/> is what the stream copies read, at any offset; device-memory backends
    /// say no and hand out nothing.
    /// </summary>
    [ContractFact]
    public async Task TryGetHostMemory_HostBackends_SeeTheSameBytesAsStreams()
    {
        const int size = 4 * 4096 + 77;
        using var buffer = Accelerator.Allocate(size);
        var expectHost = Accelerator.Kind is AcceleratorKind.Cpu or AcceleratorKind.IlgpuCpu;
        Assert.Equal(expectHost, buffer.IsHostMemory);
        var ok = buffer.TryGetHostMemory(4099, 9000, out var memory, out var address);
        Assert.Equal(expectHost, ok);
        if (!ok)
        {
            Assert.True(memory.IsEmpty);
            return;
        }
        Assert.NotEqual(0, address);
        var pattern = TestData.Random(9000, 11);
        pattern.CopyTo(memory.Span);
        var back = new byte[size];
        Accelerator.DefaultStream.EnqueueCopyToHost(buffer.AsView(), (Memory<byte>)back);
        await Accelerator.DefaultStream.SynchronizeAsync();
        Assert.True(pattern.AsSpan().SequenceEqual(back.AsSpan(4099, 9000)));
        // The other way: a stream copy lands where the memory points.
        var second = TestData.Random(size, 12);
        Accelerator.DefaultStream.EnqueueCopyFromHost((ReadOnlyMemory<byte>)second, buffer.AsView());
        await Accelerator.DefaultStream.SynchronizeAsync();
        Assert.True(second.AsSpan(4099, 9000).SequenceEqual(memory.Span));
        Assert.Throws<ArgumentOutOfRangeException>(() => buffer.TryGetHostMemory(size - 10, 11, out _, out _));
    }

    // ------------------------------------------------------------------ round trips

    [ContractTheory]
    [MemberData(nameof(OddSizes))]
    public async Task RoundTrip_HostDeviceDeviceHost_BytesSurvive(int size)
    {
        var data = TestData.Random(size, seed: size);
        var stream = Accelerator.DefaultStream;
        using var a = Accelerator.Allocate(size);
        using var b = Accelerator.Allocate(size);
        var back = new byte[size];

        stream.EnqueueCopyFromHost(data, a.AsView());
        stream.EnqueueCopy(a.AsView(), b.AsView());
        var done = stream.EnqueueCopyToHost(b.AsView(), back.AsMemory());
        await done.Completion;

        Assert.True(done.IsCompletedSuccessfully);
        Assert.Null(done.Error);
        Assert.Equal(data, back);
    }

    [ContractTheory]
    [MemberData(nameof(OddSizes))]
    public async Task RoundTrip_PinnedAndRawPointer_BytesSurvive(int size)
    {
        var data = TestData.Random(size, seed: 7 * size);
        var stream = Accelerator.CreateStream();
        using var pinnedIn = Accelerator.AllocatePinned(size + 100);
        using var pinnedOut = Accelerator.AllocatePinned(size + 100);
        using var device = Accelerator.Allocate(size + 64);
        data.CopyTo(pinnedIn.GetSpan(100, size));

        stream.EnqueueCopyFromHost(pinnedIn, device.View(64, size), sourceOffsetInBytes: 100);
        stream.EnqueueCopyToHost(device.View(64, size), pinnedOut, destinationOffsetInBytes: 50);
        var raw = new byte[size];
        var handle = GCHandle.Alloc(raw, GCHandleType.Pinned);
        try
        {
            await stream.EnqueueCopyToHost(device.View(64, size), handle.AddrOfPinnedObject()).Completion;
        }
        finally
        {
            handle.Free();
        }

        Assert.Equal(data, pinnedOut.GetSpan(50, size).ToArray());
        Assert.Equal(data, raw);
        stream.Dispose();
    }

    [ContractTheory]
    [MemberData(nameof(OddSizes))]
    public async Task EnqueueFill_AtOffset_ChangesOnlyThatRange(int size)
    {
        var stream = Accelerator.DefaultStream;
        using var buffer = Accelerator.Allocate(size);
        stream.EnqueueFill(buffer.AsView(), 0xAA);
        var offset = size / 3;
        var length = size - offset - size / 5;
        stream.EnqueueFill(buffer.View(offset, length), 0x55);
        var back = new byte[size];
        await stream.EnqueueCopyToHost(buffer.AsView(), back).Completion;

        for (var i = 0; i < size; i++)
        {
            var expected = i >= offset && i < offset + length ? (byte)0x55 : (byte)0xAA;
            if (back[i] != expected) Assert.Fail($"byte {i}: expected 0x{expected:X2}, found 0x{back[i]:X2} (fill at {offset}, +{length} of {size})");
        }
    }

    [ContractFact]
    public async Task EnqueueCopy_BetweenOffsetsOfOneBuffer_CopiesTheRange()
    {
        const int size = 10_007;
        var data = TestData.Random(size, 3);
        using var buffer = Accelerator.Allocate(3 * size + 20);
        var stream = Accelerator.DefaultStream;
        stream.EnqueueFill(buffer.AsView(), 0);
        stream.EnqueueCopyFromHost(data, buffer.View(5, size));
        stream.EnqueueCopy(buffer.View(5, size), buffer.View(2 * size + 1, size));
        var back = new byte[size];
        await stream.EnqueueCopyToHost(buffer.View(2 * size + 1, size), back).Completion;
        Assert.Equal(data, back);
    }

    [ContractFact]
    public async Task EmptyViews_AllOperations_CompleteAsMarkers()
    {
        using var empty = Accelerator.Allocate(0);
        using var buffer = Accelerator.Allocate(16);
        var stream = Accelerator.DefaultStream;
        Assert.Equal(0, empty.LengthInBytes);
        Assert.True(empty.AsView().IsEmpty);
        await stream.EnqueueFill(empty.AsView(), 1).Completion;
        await stream.EnqueueCopy(buffer.View(16, 0), empty.AsView()).Completion;
        await stream.EnqueueCopyToHost(buffer.View(3, 0), Memory<byte>.Empty).Completion;
        await stream.EnqueueCopyFromHost(ReadOnlyMemory<byte>.Empty, buffer.View(0, 0)).Completion;
    }

    // ------------------------------------------------------------------ ordering and concurrency

    [ContractFact]
    public async Task Stream_DependentChainWithoutSync_ExecutesInOrder()
    {
        const int size = 4 << 20;
        var stream = Accelerator.CreateStream();
        using var b1 = Accelerator.Allocate(size);
        using var b2 = Accelerator.Allocate(size);
        using var b3 = Accelerator.Allocate(size);
        var events = new List<DeviceEvent>();
        for (var round = 1; round <= 5; round++)
        {
            events.Add(stream.EnqueueFill(b1.AsView(), (byte)round));
            events.Add(stream.EnqueueCopy(b1.AsView(), b2.AsView()));
            events.Add(stream.EnqueueCopy(b2.AsView(), b3.AsView()));
        }
        var back = new byte[size];
        var last = stream.EnqueueCopyToHost(b3.AsView(), back);
        var violations = 0;
        var checks = events.Select((e, i) => e.Completion.ContinueWith(_ =>
        {
            for (var j = 0; j < i; j++) if (!events[j].IsCompleted) Interlocked.Increment(ref violations);
        }, TaskScheduler.Default)).ToArray();
        await last.Completion;
        await Task.WhenAll(checks);

        Assert.Equal(0, violations);
        Assert.All(events, e => Assert.True(e.IsCompletedSuccessfully));
        Assert.True(back.All(b => b == 5), "the last round's value must win");
        stream.Dispose();
    }

    [ContractFact]
    public async Task Stream_ManySmallOperations_CompletedEventsAlwaysFormAPrefix()
    {
        // Scanning from the newest event to the oldest is race-free: once event k is seen completed, every
        // earlier event must already be completed, because completion within a stream is in order.
        using var buffer = Accelerator.Allocate(4096);
        var stream = Accelerator.CreateStream();
        var events = new DeviceEvent[600];
        for (var i = 0; i < events.Length; i++)
            events[i] = i % 3 == 2 ? stream.Record() : stream.EnqueueFill(buffer.AsView(), (byte)i);
        var last = events[^1];
        var scans = 0;
        while (!last.IsCompleted || scans == 0)
        {
            var seenCompleted = false;
            for (var i = events.Length - 1; i >= 0; i--)
            {
                if (events[i].IsCompleted) seenCompleted = true;
                else if (seenCompleted) Assert.Fail($"event {i} is pending although a later event completed (scan {scans})");
            }
            scans++;
        }
        await stream.SynchronizeAsync();
        stream.Dispose();
    }

    [ContractFact]
    public async Task ConcurrentStreams_FromManyThreads_EachRoundTripsItsData()
    {
        const int streams = 4;
        const int size = 300_001;
        var tasks = Enumerable.Range(0, streams).Select(s => Task.Run(async () =>
        {
            var stream = Accelerator.CreateStream();
            using var device = Accelerator.Allocate(size);
            using var copy = Accelerator.Allocate(size);
            for (var iteration = 0; iteration < 5; iteration++)
            {
                var data = TestData.Random(size, 1000 * s + iteration);
                var back = new byte[size];
                stream.EnqueueCopyFromHost(data, device.AsView());
                stream.EnqueueCopy(device.AsView(), copy.AsView());
                stream.EnqueueCopyToHost(copy.AsView(), back);
                await stream.SynchronizeAsync();
                Assert.Equal(data, back);
            }
            stream.Dispose();
        })).ToArray();
        await Task.WhenAll(tasks);
    }

    [ContractFact]
    public void Enqueue_LargeCopy_ReturnsBeforeTheWorkCompletes()
    {
        const int size = 64 << 20;
        using var a = Accelerator.Allocate(size);
        using var b = Accelerator.Allocate(size);
        var stream = Accelerator.CreateStream();
        var fill = stream.EnqueueFill(a.AsView(), 1);
        var copy = stream.EnqueueCopy(a.AsView(), b.AsView());
        Assert.False(copy.IsCompleted, "a 64 MiB fill + copy must not run on the caller's thread");
        stream.Synchronize();
        Assert.True(fill.IsCompletedSuccessfully);
        Assert.True(copy.IsCompletedSuccessfully);
        Assert.Equal(0, stream.PendingOperationCount);
        stream.Dispose();
    }

    [ContractFact]
    public async Task DeviceEvent_ManyAwaiters_AllResume()
    {
        using var buffer = Accelerator.Allocate(16 << 20);
        var evt = Accelerator.DefaultStream.EnqueueFill(buffer.AsView(), 9);
        var waiters = Enumerable.Range(0, 32).Select(async _ => { await evt.Completion; return evt.IsCompleted; }).ToArray();
        var results = await Task.WhenAll(waiters);
        Assert.All(results, Assert.True);
        await evt.WaitAsync(CancellationToken.None);
    }

    [ContractFact]
    public async Task SynchronizeAsync_AfterQueuedWork_AllPriorEventsCompleted()
    {
        using var buffer = Accelerator.Allocate(8 << 20);
        var stream = Accelerator.DefaultStream;
        var events = Enumerable.Range(0, 10).Select(i => stream.EnqueueFill(buffer.AsView(), (byte)i)).ToArray();
        await stream.SynchronizeAsync();
        Assert.All(events, e => Assert.True(e.IsCompletedSuccessfully));
        await Accelerator.SynchronizeAsync();
        Accelerator.Synchronize();
    }

    [ContractFact]
    public async Task SynchronizeAsync_CancelledToken_ThrowsOperationCanceled()
    {
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await Accelerator.DefaultStream.SynchronizeAsync(cts.Token));
    }

    // ------------------------------------------------------------------ lifetime

    [ContractFact]
    public void Dispose_WhileWorkQueued_DrainsAndCompletesEveryEvent()
    {
        var accelerator = CreateAccelerator();
        var stream = accelerator.CreateStream();
        var a = accelerator.Allocate(8 << 20);
        var b = accelerator.Allocate(8 << 20);
        var host = accelerator.AllocatePinned(8 << 20);
        var events = new List<DeviceEvent>();
        for (var i = 0; i < 20; i++)
        {
            events.Add(stream.EnqueueFill(a.AsView(), (byte)i));
            events.Add(stream.EnqueueCopy(a.AsView(), b.AsView()));
            events.Add(stream.EnqueueCopyToHost(b.AsView(), host));
        }

        accelerator.Dispose();

        Assert.All(events, e => Assert.True(e.IsCompletedSuccessfully));
        Assert.True(a.IsDisposed && b.IsDisposed && host.IsDisposed && stream.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => stream.EnqueueFill(a.AsView(), 0));
        Assert.Throws<ObjectDisposedException>(() => accelerator.Allocate(1));
        a.Dispose(); // idempotent after the parent freed it
        stream.Dispose();
        host.Dispose();
    }

    [ContractFact]
    public async Task DisposeAsync_WhileWorkQueued_DrainsWithoutBlocking()
    {
        var accelerator = CreateAccelerator();
        var stream = accelerator.CreateStream();
        var a = accelerator.Allocate(8 << 20);
        var events = Enumerable.Range(0, 30).Select(i => stream.EnqueueFill(a.AsView(), (byte)i)).ToArray();
        await accelerator.DisposeAsync();
        Assert.All(events, e => Assert.True(e.IsCompletedSuccessfully));
        Assert.True(a.IsDisposed);
    }

    [ContractFact]
    public async Task BufferDispose_WithCopyInFlight_CopyStillDeliversTheBytes()
    {
        const int size = 8 << 20;
        var data = TestData.Random(size, 11);
        var stream = Accelerator.CreateStream();
        var buffer = Accelerator.Allocate(size);
        var back = new byte[size];
        stream.EnqueueCopyFromHost(data, buffer.AsView());
        var read = stream.EnqueueCopyToHost(buffer.AsView(), back);
        buffer.Dispose();                      // memory must live until the read completes
        await read.Completion;
        Assert.Equal(data, back);
        Assert.Throws<ObjectDisposedException>(() => buffer.AsView());
        stream.Dispose();
    }

    [ContractFact]
    public void UseAfterDispose_EveryEntryPoint_ThrowsObjectDisposed()
    {
        var buffer = Accelerator.Allocate(64);
        var view = buffer.AsView();
        var pinned = Accelerator.AllocatePinned(64);
        var stream = Accelerator.CreateStream();
        buffer.Dispose();
        pinned.Dispose();

        Assert.Throws<ObjectDisposedException>(() => buffer.View(0, 1));
        Assert.Throws<ObjectDisposedException>(() => stream.EnqueueFill(view, 0));
        Assert.Throws<ObjectDisposedException>(() => stream.EnqueueCopyToHost(view, new byte[64]));
        Assert.Throws<ObjectDisposedException>(() => pinned.GetSpan());
        Assert.Throws<ObjectDisposedException>(() => pinned.Pointer);
        using var live = Accelerator.Allocate(64);
        Assert.Throws<ObjectDisposedException>(() => stream.EnqueueCopyToHost(live.AsView(), pinned));
        Assert.Throws<ObjectDisposedException>(() => stream.EnqueueCopyFromHost(pinned, live.AsView()));

        stream.Dispose();
        Assert.Throws<ObjectDisposedException>(() => stream.EnqueueFill(live.AsView(), 0));
        Assert.Throws<ObjectDisposedException>(() => stream.Record());
        Assert.Throws<ObjectDisposedException>(() => stream.Synchronize());
        Assert.Equal(0, stream.PendingOperationCount);
    }

    // ------------------------------------------------------------------ bad input

    [ContractTheory]
    [InlineData(-1, 1)]
    [InlineData(0, -1)]
    [InlineData(0, 101)]
    [InlineData(100, 1)]
    [InlineData(101, 0)]
    [InlineData(long.MaxValue, 2)]
    [InlineData(50, long.MaxValue)]
    public void View_RangeOutsideBuffer_ThrowsArgumentOutOfRangeNamingSizes(long offset, long length)
    {
        using var buffer = Accelerator.Allocate(100);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => buffer.View(offset, length));
        Assert.Contains("100 bytes", ex.Message);
        Assert.Contains(length.ToString(System.Globalization.CultureInfo.InvariantCulture), ex.Message);
    }

    [ContractFact]
    public void View_ValidEdges_AreAccepted()
    {
        using var buffer = Accelerator.Allocate(100);
        Assert.Equal(100, buffer.View(0, 100).LengthInBytes);
        Assert.True(buffer.View(100, 0).IsEmpty);
        var sub = buffer.View(10, 50).SubView(5, 45);
        Assert.Equal(15, sub.OffsetInBytes);
        Assert.Throws<ArgumentOutOfRangeException>(() => buffer.View(10, 50).SubView(5, 46));
        Assert.Throws<InvalidOperationException>(() => default(DeviceView).SubView(0, 0));
    }

    [ContractFact]
    public void Enqueue_DefaultView_ThrowsArgumentException()
    {
        var stream = Accelerator.DefaultStream;
        var ex = Assert.Throws<ArgumentException>(() => stream.EnqueueFill(default, 0));
        Assert.Equal("destination", ex.ParamName);
        Assert.Throws<ArgumentException>(() => stream.EnqueueCopyToHost(default, new byte[1]));
    }

    [ContractFact]
    public void Enqueue_ViewOfAnotherAccelerator_ThrowsArgumentException()
    {
        using var other = CreateAccelerator();
        using var foreign = other.Allocate(64);
        using var local = Accelerator.Allocate(64);
        var stream = Accelerator.DefaultStream;
        var ex = Assert.Throws<ArgumentException>(() => stream.EnqueueCopy(foreign.AsView(), local.AsView()));
        Assert.Equal("source", ex.ParamName);
        Assert.Throws<ArgumentException>(() => stream.EnqueueCopy(local.AsView(), foreign.AsView()));
        Assert.Throws<ArgumentException>(() => stream.EnqueueFill(foreign.AsView(), 1));
        Assert.Throws<ArgumentException>(() => stream.EnqueueCopyToHost(foreign.AsView(), new byte[64]));
    }

    [ContractFact]
    public void EnqueueCopy_MismatchedOrOverlapping_ThrowsArgumentException()
    {
        using var buffer = Accelerator.Allocate(100);
        using var other = Accelerator.Allocate(100);
        var stream = Accelerator.DefaultStream;
        var mismatch = Assert.Throws<ArgumentException>(() => stream.EnqueueCopy(buffer.View(0, 10), other.View(0, 11)));
        Assert.Contains("10 bytes", mismatch.Message);
        Assert.Contains("11 bytes", mismatch.Message);
        Assert.Throws<ArgumentException>(() => stream.EnqueueCopy(buffer.View(0, 50), buffer.View(49, 50)));
        Assert.Equal(0, stream.PendingOperationCount);
    }

    [ContractFact]
    public void EnqueueHostCopies_HostRangeTooSmall_ThrowsArgumentOutOfRange()
    {
        using var buffer = Accelerator.Allocate(100);
        using var pinned = Accelerator.AllocatePinned(100);
        var stream = Accelerator.DefaultStream;
        Assert.Throws<ArgumentOutOfRangeException>(() => stream.EnqueueCopyToHost(buffer.AsView(), pinned, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => stream.EnqueueCopyToHost(buffer.AsView(), pinned, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => stream.EnqueueCopyFromHost(pinned, buffer.AsView(), 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => stream.EnqueueCopyToHost(buffer.AsView(), new byte[99]));
        Assert.Throws<ArgumentOutOfRangeException>(() => stream.EnqueueCopyFromHost(new byte[99], buffer.AsView()));
        Assert.Throws<ArgumentException>(() => stream.EnqueueCopyToHost(buffer.AsView(), (nint)0));
        Assert.Throws<ArgumentException>(() => stream.EnqueueCopyFromHost((nint)0, buffer.AsView()));
        Assert.Throws<ArgumentNullException>(() => stream.EnqueueCopyToHost(buffer.AsView(), (PinnedHostBuffer)null!));
    }

    [ContractFact]
    public void Allocate_BeyondDeviceMemory_ThrowsOutOfMemoryWithSizes()
    {
        var request = Accelerator.MaxAllocationSizeInBytes + 1;
        var ex = Assert.Throws<AcceleratorOutOfMemoryException>(() => Accelerator.Allocate(request));
        Assert.Equal(request, ex.RequestedBytes);
        Assert.Equal(Accelerator.MemorySizeInBytes, ex.MemorySizeInBytes);
        Assert.Equal(Accelerator.Kind, ex.Kind);
        Assert.Contains(request.ToString(System.Globalization.CultureInfo.InvariantCulture), ex.Message);
        Assert.Throws<AcceleratorOutOfMemoryException>(() => Accelerator.Allocate(long.MaxValue));
        Assert.Throws<ArgumentOutOfRangeException>(() => Accelerator.Allocate(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Accelerator.AllocatePinned(-1));
    }

    // ------------------------------------------------------------------ pinned host memory

    [ContractTheory]
    [InlineData(1)]
    [InlineData(4096)]
    [InlineData(1_000_003)]
    public void AllocatePinned_AnySize_IsAlignedAndUsable(int size)
    {
        using var pinned = Accelerator.AllocatePinned(size);
        Assert.Equal(0, pinned.Pointer % PinnedHostBuffer.AlignmentInBytes);
        Assert.Equal(size, pinned.LengthInBytes);
        Assert.Equal(size, pinned.Memory.Length);
        pinned.GetSpan().Fill(7);
        Assert.Equal(7, pinned.GetMemory(size - 1, 1).Span[0]);
        Assert.Throws<ArgumentOutOfRangeException>(() => pinned.GetSpan(size, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => pinned.GetMemory(-1, 1));
    }

    [ContractFact]
    public async Task PinnedHostBuffer_MemorySlices_WorkWithRandomAccess()
    {
        using var dir = new TestSupport.TempDir("pinned");
        using var pinned = Accelerator.AllocatePinned(3 * 4096);
        TestData.Random(3 * 4096, 5).CopyTo(pinned.GetSpan());
        var path = dir.File("slice.bin");
        using (var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, FileOptions.Asynchronous))
        {
            await RandomAccess.WriteAsync(handle, pinned.GetMemory(4096, 8192), 0);
            var back = new byte[8192];
            await RandomAccess.ReadAsync(handle, back, 0);
            Assert.Equal(pinned.GetSpan(4096, 8192).ToArray(), back);
        }
    }
}

using CheckpointGpu.TestSupport;
using CheckpointGpu.Format;
using CheckpointGpu.Devices;

namespace CheckpointGpu.Pipeline.Tests;

/// <summary>
/// The failure callback of <see cref="CheckpointPipeline.QueueSave(string, SavePlan, Func{string, CancellationToken, ValueTask}?, Action{Exception}?, CancellationToken)"/>
/// and commit-only steps (<see cref="CheckpointPipeline.EnqueueCommitOnly"/>): what a coordinated (multi-worker) save needs
/// from the pipeline.
/// </summary>
public sealed class SaveCallbackTests
{
    private static readonly long[] Sizes = [4097, 100_003, 17];

    [Fact]
    public async Task OnFailed_WriteFails_RunsOnceWithTheFailure_BeforeTheHandleFaults_AfterTemporariesAreGone()
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, Sizes);
        var storage = new FaultInjectingShardStorage(LocalShardStorage.Instance) { FailWriteNumber = 2 };
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 8192, SlotCount = 3, Storage = storage });
        model.SetStep(1);
        var calls = new List<(Exception Error, bool HandleFaulted, string[] Leftovers)>();
        SaveHandle? handle = null;
        var committed = false;
        handle = pipeline.QueueSave(dir.Prefix("ckpt-1"), SavePlan.Create(model.Items()), (_, _) => { committed = true; return default; },
            error => calls.Add((error, handle!.Completion.IsCompleted, [.. Directory.EnumerateFiles(dir.Path)])));
        var thrown = await Assert.ThrowsAsync<IOException>(() => handle.Completion);
        var call = Assert.Single(calls);
        Assert.Same(thrown, call.Error);
        Assert.False(call.HandleFaulted, "onFailed must run before the handle faults");
        Assert.Empty(call.Leftovers);
        Assert.False(committed);
    }

    [Fact]
    public async Task OnFailed_CommitCallbackThrows_RunsWithThatError_CommittedFilesStay()
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, Sizes);
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 8192, SlotCount = 3 });
        model.SetStep(1);
        Exception? seen = null;
        var handle = pipeline.QueueSave(dir.Prefix("ckpt-1"), SavePlan.Create(model.Items()),
            (_, _) => throw new InvalidOperationException("coordination failed"), error => seen = error);
        var thrown = await Assert.ThrowsAsync<InvalidOperationException>(() => handle.Completion);
        Assert.Same(thrown, seen);
        // The commit point had passed: the checkpoint itself is complete and verifies.
        model.AssertCheckpoint(dir.Prefix("ckpt-1"), 1);
    }

    [Fact]
    public async Task OnFailed_Throwing_IsAddedToTheHandlesFailures()
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, Sizes);
        var storage = new FaultInjectingShardStorage(LocalShardStorage.Instance) { FailWriteNumber = 1 };
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 8192, SlotCount = 3, Storage = storage });
        model.SetStep(1);
        var handle = pipeline.QueueSave(dir.Prefix("ckpt-1"), SavePlan.Create(model.Items()), null, _ => throw new ApplicationException("report failed"));
        await Assert.ThrowsAsync<IOException>(() => handle.Completion);
        var all = handle.Completion.Exception!.InnerExceptions;
        Assert.IsType<IOException>(all[0]);
        Assert.Contains(all, e => e is ApplicationException { Message: "report failed" });
    }

    [Fact]
    public async Task EnqueueCommitOnly_RunsInQueueOrder_WritesNoFiles()
    {
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, Sizes);
        // Slow writes keep the first save running while the step and a second save are queued behind it.
        var storage = new FaultInjectingShardStorage(LocalShardStorage.Instance) { WriteDelay = TimeSpan.FromMilliseconds(20) };
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 8192, SlotCount = 3, Storage = storage });
        var order = new List<string>();
        model.SetStep(1);
        var first = pipeline.QueueSave(dir.Prefix("ckpt-1"), SavePlan.Create(model.Items()), (p, _) => { lock (order) order.Add("save " + Path.GetFileName(p)); return default; });
        var step = pipeline.EnqueueCommitOnly(dir.Prefix("ckpt-x"), (p, _) => { lock (order) order.Add("step " + Path.GetFileName(p) + " after " + File.Exists(dir.Prefix("ckpt-1.index"))); return default; });
        Assert.True(step.Snapshotted.IsCompleted, "a commit-only step reads no device buffer");
        await first.Snapshotted;
        model.SetStep(2);
        var second = pipeline.QueueSave(dir.Prefix("ckpt-2"), SavePlan.Create(model.Items()), (p, _) => { lock (order) order.Add("save " + Path.GetFileName(p)); return default; });
        await Task.WhenAll(first.Completion, step.Completion, second.Completion);
        Assert.Equal(["save ckpt-1", "step ckpt-x after True", "save ckpt-2"], order);
        Assert.Empty(Directory.EnumerateFiles(dir.Path, "ckpt-x*"));
        Assert.Empty(step.Plan.Tensors);
        Assert.Empty(step.Entries!);
        Assert.Equal(dir.Prefix("ckpt-x"), step.Prefix);
    }

    [Fact]
    public async Task EnqueueCommitOnly_Cancelled_SkipsTheStep_RunsOnFailed()
    {
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 8192, SlotCount = 2 });
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var ran = false;
        Exception? failure = null;
        var step = pipeline.EnqueueCommitOnly("/nonexistent/ckpt-1", (_, _) => { ran = true; return default; }, e => failure = e, cts.Token);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => step.Completion.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.False(ran);
        Assert.IsAssignableFrom<OperationCanceledException>(failure);
    }

    [Fact]
    public async Task SaveAsync_CancelledBeforeItStarts_FaultsCancelled_PipelineStaysUsable()
    {
        // Regression: cleanup of a save cancelled before it created its files threw from the queue's executor,
        // so the handle never completed and every later save hung.
        using var dir = new TempDir();
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var model = new TestModel(acc, Sizes);
        await using var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 8192, SlotCount = 2 });
        model.SetStep(1);
        var handle = pipeline.QueueSave(dir.Prefix("ckpt-1"), SavePlan.Create(model.Items()), null, new CancellationToken(canceled: true));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => handle.Completion.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Empty(Directory.EnumerateFiles(dir.Path));
        await pipeline.QueueSave(dir.Prefix("ckpt-2"), SavePlan.Create(model.Items())).Completion.WaitAsync(TimeSpan.FromSeconds(30));
        model.AssertCheckpoint(dir.Prefix("ckpt-2"), 1);
    }

    [Fact]
    public async Task EnqueueCommitOnly_BadArguments_Throw()
    {
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 8192, SlotCount = 2 });
        Assert.Throws<ArgumentException>(() => pipeline.EnqueueCommitOnly("", (_, _) => default));
        Assert.Throws<ArgumentNullException>(() => pipeline.EnqueueCommitOnly("p", null!));
        await pipeline.DisposeAsync();
        Assert.Throws<ObjectDisposedException>(() => pipeline.EnqueueCommitOnly("p", (_, _) => default));
    }
}

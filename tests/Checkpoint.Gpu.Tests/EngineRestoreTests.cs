using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Tests;

/// <summary>
/// Restore through the IO device: the synchronous and asynchronous restores are the same engine (bit for bit on every
/// TF-written corpus checkpoint), and a flipped byte fails every restore path with a <see cref="CheckpointFormatException"/>
/// naming file, key and offset while the variable keeps its previous value — never part of the stored one.
/// </summary>
public sealed class EngineRestoreTests : IClassFixture<CpuFixture>
{
    private readonly Accelerator _acc;

    public EngineRestoreTests(CpuFixture fixture) { _acc = fixture.Accelerator; }

    public static TheoryData<string> AllPrefixes()
    {
        var data = new TheoryData<string>();
        if (TfCorpus.Root is null) { _ = TfCorpus.SkipReason; return data; }
        foreach (var (_, prefix) in TfCorpus.AllPrefixes()) data.Add(Path.GetRelativePath(TfCorpus.RequireRoot(), prefix));
        return data;
    }

    /// <summary>
    /// Every corpus checkpoint: the tree is built by restore-on-create (LoadedCheckpoint), then restored again into the
    /// built tree by <c>Restore</c> and by <c>RestoreAsync</c> (values zeroed before each). All three agree byte for byte,
    /// and each value carries the CRC32C TensorFlow stored.
    /// </summary>
    [CorpusTheory]
    [MemberData(nameof(AllPrefixes))]
    public async Task SyncRestore_EqualsAsyncRestore_BitForBit_AndTfCrcs(string relativePrefix)
    {
        var tf = Path.Combine(TfCorpus.RequireRoot(), relativePrefix);
        using var reader = TensorBundleReader.Open(tf);
        using var mirror = LoadedCheckpoint.Restore(tf, _acc, log: null);
        var onCreate = mirror.Variables.Select(m => m.Variable.ReadBytes()).ToArray();

        foreach (var m in mirror.Variables) m.Variable.AssignBytes(new byte[m.Variable.LengthInBytes]);
        using (mirror.Saver.Restore(tf).ExpectPartial()) { }
        var sync = mirror.Variables.Select(m => m.Variable.ReadBytes()).ToArray();

        foreach (var m in mirror.Variables) m.Variable.AssignBytes(new byte[m.Variable.LengthInBytes]);
        using (await mirror.Saver.RestoreAsync(tf)) { }
        var async = mirror.Variables.Select(m => m.Variable.ReadBytes()).ToArray();

        for (var i = 0; i < onCreate.Length; i++)
        {
            var key = mirror.Variables[i].Key;
            Assert.Equal(reader.GetEntry(key).Crc32C, MaskedCrc32C.ComputeMasked(sync[i]));
            Assert.True(sync[i].AsSpan().SequenceEqual(async[i]), $"{key}: sync and async restores differ");
            Assert.True(sync[i].AsSpan().SequenceEqual(onCreate[i]), $"{key}: restore-on-create differs");
        }
    }

    // ------------------------------------------------------------------ a flipped byte, every path

    private static readonly TensorShape BigShape = new(70_000);   // 280,000 bytes: more windows than a small ring holds

    private sealed class Model : IDisposable
    {
        public Model(Accelerator acc, bool build)
        {
            Root = new AutoTrackable();
            Checkpoint = new Checkpoint(("model", Root)) { Log = null };
            if (!build) return;
            Small = Variable.Create(Root, "small", acc, DType.Float, new TensorShape(3, 5), VariableInitializer.FromValues<float>(Enumerable.Range(0, 15).Select(i => i + 0.5f).ToArray()), fullName: "small");
            Big = Variable.Create(Root, "big", acc, DType.Float, BigShape, VariableInitializer.FromValues<float>(Enumerable.Range(0, 70_000).Select(i => i * 0.25f).ToArray()), fullName: "big");
        }

        public AutoTrackable Root { get; }
        public Checkpoint Checkpoint { get; }
        public Variable? Small { get; set; }
        public Variable? Big { get; set; }

        public void Dispose()
        {
            Checkpoint.Dispose();
            Small?.Dispose();
            Big?.Dispose();
        }
    }

    private const string BigKey = "model/big/.ATTRIBUTES/VARIABLE_VALUE";

    /// <summary>Saves the model, then flips one byte near the end of <paramref name="key"/>'s stored value.</summary>
    private string SaveAndCorrupt(TempDir dir, string key, out long entryOffset)
    {
        using var model = new Model(_acc, build: true);
        var path = model.Checkpoint.Save(dir.File("ckpt"));
        using (var reader = TensorBundleReader.Open(path))
        {
            var e = reader.GetEntry(key);
            entryOffset = e.Offset;
            var data = BundleNaming.DataFile(path, e.ShardId, reader.Header.ShardCount);
            var bytes = File.ReadAllBytes(data);
            bytes[e.Offset + e.Size - 3] ^= 0x20;
            File.WriteAllBytes(data, bytes);
        }
        return path;
    }

    private static byte[] Pattern(long n) => Enumerable.Range(0, (int)n).Select(i => (byte)(i * 13 + 1)).ToArray();

    private static void AssertNamesKeyAndOffset(CheckpointFormatException ex, string key, long offset)
    {
        Assert.Equal(CheckpointFormatError.ChecksumMismatch, ex.Error);
        Assert.Equal(key, ex.Key);
        Assert.Equal(offset, ex.Offset);
        Assert.Contains(".data-00000-of-00001", ex.Message, StringComparison.Ordinal);
    }

    public static TheoryData<bool, int> Paths() => new() { { false, 0 }, { true, 0 }, { false, 8192 }, { true, 8192 } };

    /// <summary><c>Restore</c> and <c>RestoreAsync</c> into a built model, through the default ring (held slots) and a 2 × 8 KiB ring (device scratch).</summary>
    [Theory]
    [MemberData(nameof(Paths))]
    public async Task FlippedByte_RestoreIntoBuiltModel_FailsAndKeepsPreviousValue(bool async, int slotSize)
    {
        using var dir = new TempDir("flip");
        var path = SaveAndCorrupt(dir, BigKey, out var offset);
        using var model = new Model(_acc, build: true);
        var previous = Pattern(model.Big!.LengthInBytes);
        model.Big.AssignBytes(previous);
        await using var pipeline = slotSize > 0 ? new CheckpointPipeline(_acc, new CheckpointPipelineOptions { SlotSizeInBytes = slotSize, SlotCount = 2 }) : null;
        var options = new CheckpointOptions { Pipeline = pipeline };
        var ex = async
            ? await Assert.ThrowsAsync<CheckpointFormatException>(() => model.Checkpoint.RestoreAsync(path, options))
            : Assert.Throws<CheckpointFormatException>(() => model.Checkpoint.Restore(path, options));
        AssertNamesKeyAndOffset(ex, BigKey, offset);
        Assert.Equal(previous, model.Big.ReadBytes());
    }

    /// <summary>
    /// Restore-on-create: with prefetching the restore itself fails (the value is verified before the model exists); with
    /// no prefetch budget the variable's creation fails, and no variable is left behind.
    /// </summary>
    [Theory]
    [InlineData(true, CheckpointPipelineOptions.DefaultSlotSizeInBytes)]
    [InlineData(false, CheckpointPipelineOptions.DefaultSlotSizeInBytes)]   // held in slots until verified
    [InlineData(false, 8192)]                                               // larger than the ring: streamed into the new buffer, which is discarded
    public async Task FlippedByte_RestoreOnCreate_FailsWithNoVariableLeft(bool prefetch, int slotSize)
    {
        using var dir = new TempDir("flip-create");
        var path = SaveAndCorrupt(dir, BigKey, out var offset);
        using var model = new Model(_acc, build: false);
        await using var pipeline = new CheckpointPipeline(_acc, new CheckpointPipelineOptions
        { RestoreCacheBudgetInBytes = prefetch ? 1 << 20 : 0, SlotSizeInBytes = slotSize, SlotCount = slotSize < 65536 ? 2 : CheckpointPipelineOptions.DefaultSlotCount });
        var options = new CheckpointOptions { Pipeline = pipeline };
        if (prefetch)
        {
            AssertNamesKeyAndOffset(await Assert.ThrowsAsync<CheckpointFormatException>(() => model.Checkpoint.RestoreAsync(path, options)), BigKey, offset);
            return;
        }
        var status = await model.Checkpoint.RestoreAsync(path, options);
        model.Small = Variable.Create(model.Root, "small", _acc, DType.Float, new TensorShape(3, 5));
        Assert.Equal(Enumerable.Range(0, 15).Select(i => i + 0.5f).ToArray(), model.Small.Read<float>());
        var ex = Assert.Throws<CheckpointFormatException>(() => Variable.Create(model.Root, "big", _acc, DType.Float, BigShape));
        AssertNamesKeyAndOffset(ex, BigKey, offset);
        Assert.Null(model.Root.LookupDependency("big"));
        status.ExpectPartial().Dispose();
    }

    /// <summary>Partitioned variables take the checksum-first host fallback: a corrupt slice fails, every part keeps its value.</summary>
    [Fact]
    public void FlippedByte_PartitionedVariable_FailsAndKeepsPreviousValues()
    {
        using var dir = new TempDir("flip-part");
        var shape = new TensorShape(6, 4);
        var slices = Distributed.Variables.PartitionedVariable.SplitAlongAxis(shape, 0, 2);
        string path;
        {
            using var pv = new Distributed.Variables.PartitionedVariable("emb", DType.Float, shape);
            foreach (var s in slices) pv.AddPart(_acc, s, VariableInitializer.Constant(2.5f));
            var root = new AutoTrackable();
            root.Track("emb", pv);
            using var ckpt = new Checkpoint(("model", root)) { Log = null };
            path = ckpt.Save(dir.File("ckpt"));
        }
        using (var reader = TensorBundleReader.Open(path))
        {
            var data = BundleNaming.DataFile(path, 0, 1);
            var bytes = File.ReadAllBytes(data);
            bytes[FindSliceEnd(reader) - 2] ^= 0x40;   // inside the last stored slice
            File.WriteAllBytes(data, bytes);
        }
        using var target = new Distributed.Variables.PartitionedVariable("emb", DType.Float, shape);
        foreach (var s in slices) target.AddPart(_acc, s, VariableInitializer.Constant(-1f));
        var root2 = new AutoTrackable();
        root2.Track("emb", target);
        using var ckpt2 = new Checkpoint(("model", root2)) { Log = null };
        var ex = Assert.Throws<CheckpointFormatException>(() => ckpt2.Restore(path));
        Assert.Equal(CheckpointFormatError.ChecksumMismatch, ex.Error);
        foreach (var part in target.Parts) Assert.All(part.Variable.Read<float>(), v => Assert.Equal(-1f, v));
    }

    private static long FindSliceEnd(TensorBundleReader reader)
    {
        // Slice entries are stored under encoded keys; the data of the last one written ends last in the file.
        var last = reader.Entries.Where(e => e.IsSliceEntry).MaxBy(e => e.Offset + e.Size)!;
        return last.Offset + last.Size;
    }

    /// <summary>TF1 name-based restore (a TF-written corpus checkpoint, one byte flipped in a copy): fails, the variable keeps its value.</summary>
    [CorpusFact]
    public void FlippedByte_NameBasedTf1_FailsAndKeepsPreviousValue()
    {
        var tf = Path.Combine(TfCorpus.RequireRoot(), "v1-saver-adam-tf110-houseprices", "model.ckpt");
        using var dir = new TempDir("flip-tf1");
        var copy = dir.File("model.ckpt");
        File.Copy(tf + ".index", copy + ".index");
        foreach (var f in Directory.GetFiles(Path.GetDirectoryName(tf)!, "model.ckpt.data-*")) File.Copy(f, Path.Combine(dir.Path, Path.GetFileName(f)));
        using var mirror = LoadedCheckpoint.Restore(copy, _acc, log: null);
        var victim = mirror.Variables.Where(m => m.Variable.LengthInBytes >= 8).MaxBy(m => m.Variable.LengthInBytes)!;
        using (var reader = TensorBundleReader.Open(copy))
        {
            var e = reader.GetEntry(victim.Key);
            var data = BundleNaming.DataFile(copy, e.ShardId, reader.Header.ShardCount);
            var bytes = File.ReadAllBytes(data);
            bytes[e.Offset + e.Size / 2] ^= 0x01;
            File.WriteAllBytes(data, bytes);
        }
        var previous = Pattern(victim.Variable.LengthInBytes);
        victim.Variable.AssignBytes(previous);
        var ex = Assert.Throws<CheckpointFormatException>(() => mirror.Saver.Restore(copy));
        Assert.Equal(CheckpointFormatError.ChecksumMismatch, ex.Error);
        Assert.Equal(victim.Key, ex.Key);
        Assert.Equal(previous, victim.Variable.ReadBytes());
    }

    /// <summary>
    /// Restore-on-create into a <see cref="TrackableList{T}"/>: the element's own value is intact, but its walk creates its
    /// optimizer slots and the <c>v</c> value is corrupt. <c>AddVariable</c> fails naming the key; the new element is neither
    /// in the list nor alive, and the slot the walk created before (<c>m</c>) is unregistered and disposed.
    /// </summary>
    [Fact]
    public async Task FlippedSlotByte_TrackableListRestoreOnCreate_NoElementOrSlotLeft()
    {
        using var dir = new TempDir("flip-list-slot");
        string path;
        {
            var root = new AutoTrackable();
            var list = root.Track("vars", new TrackableList<Variable>());
            using var adam = new LegacyAdam(_acc);
            root.Track("opt", adam);
            using var v0 = list.AddVariable(_acc, DType.Float, new TensorShape(3, 5), VariableInitializer.Constant(1.5f), "v0");
            adam.CreateSlots([v0]);
            adam.GetSlot(v0, "m")!.Assign<float>(Enumerable.Range(0, 15).Select(i => i * 0.5f).ToArray());
            adam.GetSlot(v0, "v")!.Assign<float>(Enumerable.Range(0, 15).Select(i => i * 0.25f).ToArray());
            using var ckpt = new Checkpoint(("model", root)) { Log = null };
            path = ckpt.Save(dir.File("ckpt"));
        }
        BundleEntry corrupt;
        using (var reader = TensorBundleReader.Open(path))
        {
            corrupt = reader.Entries.Single(e => e.Key.Contains("/.OPTIMIZER_SLOT/", StringComparison.Ordinal) && e.Key.EndsWith("/v/.ATTRIBUTES/VARIABLE_VALUE", StringComparison.Ordinal));
            var data = BundleNaming.DataFile(path, corrupt.ShardId, reader.Header.ShardCount);
            var bytes = File.ReadAllBytes(data);
            bytes[corrupt.Offset + corrupt.Size / 2] ^= 0x10;
            File.WriteAllBytes(data, bytes);
        }

        var root2 = new AutoTrackable();
        var list2 = root2.Track("vars", new TrackableList<Variable>());
        using var adam2 = new LegacyAdam(_acc);
        root2.Track("opt", adam2);
        await using var ckpt2 = new Checkpoint(("model", root2)) { Log = null };
        var created = new HashSet<Variable>(ReferenceEqualityComparer.Instance);
        var options = new CheckpointOptions
        {
            IO = new CheckpointPipelineOptions
            {
                RestoreCacheBudgetInBytes = 0,   // nothing prefetched: the values are read when the element is created
                Storage = new OpenObservingStorage(() =>
                {
                    if (list2.Count == 0) return;
                    created.Add(list2[0]);
                    created.UnionWith(adam2.GetSlots(list2[0]).Values);
                }),
            },
        };
        var status = await ckpt2.RestoreAsync(path, options);
        var ex = Assert.Throws<CheckpointFormatException>(() => list2.AddVariable(_acc, DType.Float, new TensorShape(3, 5)));
        Assert.Equal(CheckpointFormatError.ChecksumMismatch, ex.Error);
        Assert.Equal(corrupt.Key, ex.Key);
        Assert.Equal(corrupt.Offset, ex.Offset);
        Assert.Empty(list2);
        Assert.Null(list2.LookupDependency("0"));
        Assert.Empty(adam2.SlotNames);
        Assert.Equal(2, created.Count);   // the element and its m slot, observed before v was read
        Assert.All(created, v => Assert.True(v.IsDisposed, $"'{v.Name}' is still alive"));
        status.ExpectPartial().Dispose();
    }

    // ------------------------------------------------------------------ LoadStatus.WaitAsync

    /// <summary>
    /// Restore-on-create from the prefetch cache lands asynchronously on the variable's stream: <c>WaitAsync</c> completes
    /// once the value is on the device (read back without synchronizing), and honours cancellation.
    /// </summary>
    [Fact]
    public async Task WaitAsync_CompletesWhenRestoreOnCreateValuesAreOnTheDevice()
    {
        using var dir = new TempDir("wait");
        string path;
        using (var model = new Model(_acc, build: true)) path = model.Checkpoint.Save(dir.File("ckpt"));
        using var fresh = new Model(_acc, build: false);
        var status = await fresh.Checkpoint.RestoreAsync(path);
        fresh.Big = Variable.Create(fresh.Root, "big", _acc, DType.Float, BigShape);
        fresh.Small = Variable.Create(fresh.Root, "small", _acc, DType.Float, new TensorShape(3, 5));
        Assert.Same(status, await status.WaitAsync());
        var host = new byte[fresh.Big.LengthInBytes];
        // Straight from device memory (the CPU accelerator's buffer is host memory), no stream synchronization: WaitAsync alone guarantees it.
        System.Runtime.InteropServices.Marshal.Copy(fresh.Big.Buffer.DangerousGetNativeHandle(), host, 0, host.Length);
        Assert.Equal(Enumerable.Range(0, 70_000).Select(i => i * 0.25f).ToArray(), System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(host).ToArray());
        status.AssertConsumed();
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => status.WaitAsync(cts.Token));
    }
}

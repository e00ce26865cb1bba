using System.Diagnostics;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Format.Protos;
using CheckpointGpu.Format.Table;
using CheckpointGpu.TestSupport;
using Google.Protobuf;
using Xunit.Abstractions;
using static CheckpointGpu.Format.Protos.TrackableObjectGraph.Types;
using static CheckpointGpu.Format.Protos.TrackableObjectGraph.Types.TrackableObject.Types;

namespace CheckpointGpu.Cli.Tests;

/// <summary>
/// Structure-aware fuzzing that gets past the checksums: fields inside index entries (dtype, shape, offset, size, shard id,
/// slices, keys), the bundle header, the object-graph proto, tensor bytes and the <c>checkpoint</c> state file are
/// mutated, then the tensor CRC32C of every entry whose range lies inside its data file is recomputed and the index is
/// rebuilt through the table builder (valid block CRCs), so the mutated input reaches the entry parsers, the object-graph
/// walk, restore-on-create and re-save. Every case must end in a correct result or a documented exception type, allocate
/// under 256 MiB and finish within 5 s; each case also runs one <c>ckpt</c> command in-process (exit 0, 1 or 2, no stack
/// trace). Seeded and reproducible: <c>CKPT_FUZZ_CASES=N</c> runs N cases (default 1,000), <c>CKPT_FUZZ_SEED</c> moves the
/// first seed.
/// </summary>
[Trait("Category", "Fuzz")]
public sealed class StructureFuzzTests(ITestOutputHelper output)
{
    private static readonly string[] s_bases =
    [
        "obj-keras3-tf219-manager-3ckpts/ckpt-1",
        "obj-dqn-nstep-6ckpts/ckpt-1",
        "sm-keras-tf23-adam-metrics/variables/variables",
        "sm-keras-tf25dev-stringlookup-small-vocab/variables/variables",
        "kw-subclassed-actor-critic/my_checkpoint",
        "sm-keras-tf20-sharded2/variables/variables",
        "sm-tf25-module-sgd-momentum/variables/variables",
        "smv1-tf121-regression/variables/variables",
        "v1-my-test-model-tf14/my_test_model-1000",
    ];

    private static int CaseCount => int.TryParse(Environment.GetEnvironmentVariable("CKPT_FUZZ_CASES"), out var n) ? n : 1000;
    private static int FirstSeed => int.TryParse(Environment.GetEnvironmentVariable("CKPT_FUZZ_SEED"), out var n) ? n : 1;

    /// <summary>A checkpoint taken apart: header, entries in key order, data files, object graph.</summary>
    private sealed class Parts
    {
        public required string Name { get; init; }
        public required BundleHeaderProto Header { get; set; }
        public required List<(byte[] Key, BundleEntryProto Entry)> Entries { get; set; }
        public required List<byte[]> Data { get; set; }
        public TrackableObjectGraph? Graph { get; set; }
        public bool GraphChanged { get; set; }
        public string? StateFile { get; set; }

        public Parts Clone() => new()
        {
            Name = Name, Header = Header.Clone(), Entries = Entries.Select(e => (e.Key.ToArray(), e.Entry.Clone())).ToList(),
            Data = Data.Select(d => d.ToArray()).ToList(), Graph = Graph?.Clone(), StateFile = StateFile,
        };
    }

    private static readonly Dictionary<string, Parts> s_cache = [];

    private static Parts Load(string relative)
    {
        lock (s_cache)
        {
            if (s_cache.TryGetValue(relative, out var cached)) return cached.Clone();
            var prefix = Path.Combine(TfCorpus.RequireRoot(), relative);
            var table = TableReader.ReadAll(File.ReadAllBytes(prefix + ".index"), prefix, int.MaxValue, 1 << 16);
            var header = BundleHeaderProto.Parser.ParseFrom(table[0].Value);
            var entries = table.Skip(1).Select(t => (t.Key, BundleEntryProto.Parser.ParseFrom(t.Value))).ToList();
            var data = Enumerable.Range(0, header.NumShards).Select(i => File.ReadAllBytes(BundleNaming.DataFile(prefix, i, header.NumShards))).ToList();
            TrackableObjectGraph? graph = null;
            using (var reader = TensorBundleReader.Open(prefix)) graph = reader.ReadObjectGraph();
            var parts = new Parts { Name = relative, Header = header, Entries = entries, Data = data, Graph = graph };
            s_cache[relative] = parts;
            return parts.Clone();
        }
    }

    // ------------------------------------------------------------------ mutations

    private static readonly int[] s_dtypes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 17, 19, 20, 21, 22, 23, 24, 101, 120, 200, -1, 1000];

    private static long Pick(Random r, long current, long fileLength) => r.Next(9) switch
    {
        0 => 0,
        1 => -1 - r.Next(100),
        2 => current + r.Next(1, 64),
        3 => current - r.Next(1, 64),
        4 => fileLength,
        5 => fileLength - r.Next(1, 16),
        6 => long.MaxValue - r.Next(16),
        7 => 1L << r.Next(20, 62),
        _ => r.NextInt64(0, Math.Max(1, fileLength)),
    };

    private static string MutateEntry(Random r, Parts p)
    {
        if (p.Entries.Count == 0) return "no entries";
        var i = r.Next(p.Entries.Count);
        var (key, e) = p.Entries[i];
        var shardLength = e.ShardId >= 0 && e.ShardId < p.Data.Count ? p.Data[e.ShardId].Length : 0;
        switch (r.Next(9))
        {
            case 0:
                e.Dtype = (DataType)s_dtypes[r.Next(s_dtypes.Length)];
                return "dtype";
            case 1:
                e.Shape ??= new TensorShapeProto();
                switch (r.Next(5))
                {
                    case 0: e.Shape.Dim.Add(new TensorShapeProto.Types.Dim { Size = r.Next(-2, 5) }); break;
                    case 1 when e.Shape.Dim.Count > 0: e.Shape.Dim.RemoveAt(r.Next(e.Shape.Dim.Count)); break;
                    case 2 when e.Shape.Dim.Count > 0: e.Shape.Dim[r.Next(e.Shape.Dim.Count)].Size = Pick(r, e.Shape.Dim[0].Size, 1 << 20); break;
                    case 3: e.Shape.UnknownRank = true; break;
                    default: for (var k = 0; k < 300; k++) e.Shape.Dim.Add(new TensorShapeProto.Types.Dim { Size = 1 }); break;
                }
                return "shape";
            case 2:
                e.Offset = Pick(r, e.Offset, shardLength);
                return "offset";
            case 3:
                e.Size = Pick(r, e.Size, shardLength);
                return "size";
            case 4:
                e.ShardId = r.Next(4) switch { 0 => -1, 1 => p.Header.NumShards, 2 => int.MaxValue, _ => r.Next(Math.Max(1, p.Header.NumShards)) };
                return "shard id";
            case 5:
                var slice = new TensorSliceProto();
                var rank = r.Next(0, 4);
                for (var d = 0; d < rank; d++)
                    slice.Extent.Add(r.Next(3) == 0 ? new TensorSliceProto.Types.Extent() : new TensorSliceProto.Types.Extent { Start = r.Next(-2, 6), Length = r.Next(-2, 6) });
                e.Slices.Add(slice);
                return "slices";
            case 6:
                // Rename the key (keeps the table sorted and unique below).
                byte[] newKey = r.Next(3) switch
                {
                    0 => [],
                    1 => [0, .. key],
                    _ => [.. key, (byte)r.Next(256)],
                };
                p.Entries[i] = (newKey, e);
                return "key";
            case 7:
                p.Entries.RemoveAt(i);
                return "entry removed";
            default:
                p.Entries.Add(([.. key, (byte)'x'], e.Clone()));
                return "entry duplicated";
        }
    }

    private static string MutateHeader(Random r, Parts p)
    {
        switch (r.Next(5))
        {
            case 0: p.Header.NumShards = r.Next(4) switch { 0 => 0, 1 => -1, 2 => p.Header.NumShards + 1, _ => 100_000 }; return "num_shards";
            case 1: p.Header.Endianness = (BundleHeaderProto.Types.Endianness)r.Next(0, 4); return "endianness";
            case 2: p.Header.Version ??= new VersionDef(); p.Header.Version.Producer = r.Next(-2, 3); return "producer";
            case 3: p.Header.Version ??= new VersionDef(); p.Header.Version.MinConsumer = r.Next(-1, 4); return "min_consumer";
            default: p.Header.Version ??= new VersionDef(); p.Header.Version.BadConsumers.Add(r.Next(0, 3)); return "bad_consumers";
        }
    }

    private static string MutateData(Random r, Parts p)
    {
        if (p.Data.Count == 0) return "no data";
        var shard = p.Data[r.Next(p.Data.Count)];
        if (shard.Length == 0) return "empty data";
        var at = r.Next(shard.Length);
        for (var k = at; k < Math.Min(shard.Length, at + 1 + r.Next(16)); k++) shard[k] = (byte)r.Next(256);
        return "tensor bytes";   // CRCs are recomputed below: values change, checks pass
    }

    /// <summary>
    /// Replaces a DT_STRING entry's payload with a crafted one whose element lengths may lie (longer or shorter than the
    /// data, huge, zero) but whose length checksum and tensor CRC32C are computed the way TF's writer computes them
    /// (varint lengths; masked CRC of the fixed-width lengths; CRC of lengths ‖ length checksum ‖ data), so it reaches the
    /// string decoder's size logic.
    /// </summary>
    private static string MutateStringPayload(Random r, Parts p)
    {
        var strings = p.Entries.Where(e => e.Entry.Dtype == DataType.DtString && e.Entry.ShardId >= 0 && e.Entry.ShardId < p.Data.Count).ToList();
        if (strings.Count == 0) return "no string entry";
        var e = strings[r.Next(strings.Count)].Entry;
        var count = r.Next(0, 5);
        var data = new byte[r.Next(0, 40)];
        r.NextBytes(data);
        var lengths = new ulong[count];
        for (var i = 0; i < count; i++)
            lengths[i] = r.Next(5) switch { 0 => 0, 1 => (ulong)data.Length, 2 => (ulong)r.Next(0, 20), 3 => uint.MaxValue + (ulong)r.Next(2), _ => (ulong)(data.Length / Math.Max(1, count)) };
        var payload = new List<byte>();
        var crc = 0u;
        foreach (var len in lengths)
        {
            var v = len;
            while (v >= 0x80) { payload.Add((byte)(v | 0x80)); v >>= 7; }
            payload.Add((byte)v);
            var fixedWidth = len <= uint.MaxValue ? BitConverter.GetBytes((uint)len) : BitConverter.GetBytes(len);
            crc = MaskedCrc32C.Extend(crc, fixedWidth);
        }
        var lengthCrc = BitConverter.GetBytes(MaskedCrc32C.Mask(crc));
        payload.AddRange(lengthCrc);
        crc = MaskedCrc32C.Extend(crc, lengthCrc);
        payload.AddRange(data);
        crc = MaskedCrc32C.Extend(crc, data);
        e.Shape = new TensorShapeProto();
        if (count != 1 || r.Next(2) == 0) e.Shape.Dim.Add(new TensorShapeProto.Types.Dim { Size = count });
        e.Offset = p.Data[e.ShardId].Length;
        e.Size = payload.Count;
        e.Crc32C = MaskedCrc32C.Mask(crc);
        p.Data[e.ShardId] = [.. p.Data[e.ShardId], .. payload];
        return "string payload";
    }

    private static string MutateGraph(Random r, Parts p)
    {
        var g = p.Graph;
        if (g is null || g.Nodes.Count == 0) return "no graph";
        p.GraphChanged = true;
        var n = g.Nodes.Count;
        var node = g.Nodes[r.Next(n)];
        int AnyId() => r.Next(12) switch { 0 => -1, 1 => n, 2 or 3 => 0, _ => r.Next(n) };
        switch (r.Next(12))
        {
            case 0:
                node.Children.Add(new ObjectReference { NodeId = AnyId(), LocalName = r.Next(2) == 0 ? "root" : "edge" + r.Next(3) });
                return "graph: added edge";
            case 1 when node.Children.Count > 0:
                node.Children[r.Next(node.Children.Count)].NodeId = AnyId();
                return "graph: retargeted edge";
            case 2 when node.Children.Count > 0:
                node.Children.Add(node.Children[r.Next(node.Children.Count)].Clone());
                return "graph: duplicate edge name";
            case 3:
                node.Children.Add(new ObjectReference { NodeId = g.Nodes.IndexOf(node), LocalName = "self" });
                return "graph: self-edge";
            case 4 when node.Attributes.Count > 0:
                var a = node.Attributes[r.Next(node.Attributes.Count)];
                a.CheckpointKey = r.Next(4) switch
                {
                    0 => "missing/key",
                    1 => CheckpointKeys.ObjectGraph,
                    2 => "",
                    _ => p.Entries.Count > 0 ? System.Text.Encoding.UTF8.GetString(p.Entries[r.Next(p.Entries.Count)].Key) : "",
                };
                return "graph: attribute key";
            case 5:
                node.Attributes.Add(new SerializedTensor { Name = r.Next(2) == 0 ? "VARIABLE_VALUE" : "x", CheckpointKey = p.Entries.Count > 0 ? System.Text.Encoding.UTF8.GetString(p.Entries[r.Next(p.Entries.Count)].Key) : "k" });
                return "graph: added attribute";
            case 6:
                node.SlotVariables.Add(new SlotVariableReference { OriginalVariableNodeId = AnyId(), SlotName = "m", SlotVariableNodeId = AnyId() });
                return "graph: slot reference";
            case 7 when n > 1:
                g.Nodes.RemoveAt(r.Next(1, n));
                return "graph: removed node";
            case 8:
                g.Nodes.Add(new TrackableObject { Children = { new ObjectReference { NodeId = AnyId(), LocalName = "orphan" } } });
                return "graph: added node";
            case 9 when r.Next(8) == 0:
                g.Nodes.Clear();
                return "graph: emptied";
            case 9:
                node.HasCheckpointValues = r.Next(2) == 0;
                return "graph: has_checkpoint_values";
            case 10 when node.Attributes.Count > 0:
                node.Attributes[r.Next(node.Attributes.Count)].Name = r.Next(2) == 0 ? "VARIABLE_VALUE" : "other";
                return "graph: attribute name";
            default:
                (g.Nodes[0], g.Nodes[n - 1]) = (g.Nodes[n - 1], g.Nodes[0]);
                return "graph: swapped root";
        }
    }

    private static string MutateStateFile(Random r, Parts p, string prefixName)
    {
        var lines = new List<string>
        {
            $"model_checkpoint_path: \"{prefixName}\"",
            $"all_model_checkpoint_paths: \"{prefixName}\"",
            "all_model_checkpoint_timestamps: 1700000000.5",
            "last_preserved_timestamp: 1699999999.25",
        };
        var i = r.Next(lines.Count);
        lines[i] = r.Next(8) switch
        {
            0 => lines[i][..r.Next(lines[i].Length)],
            1 => lines[i].Replace("\"", "", StringComparison.Ordinal),
            2 => "model_checkpoint_path: \"\\377\\0\\x" + r.Next(100) + "\"",
            3 => "unknown_field: 3",
            4 => "model_checkpoint_path: \"/abs/elsewhere/" + prefixName + "\"",
            5 => "all_model_checkpoint_timestamps: nan",
            6 => "model_checkpoint_path: \"../../" + prefixName + "\"",
            _ => lines[i] + " {",
        };
        p.StateFile = string.Join('\n', lines) + "\n";
        return "state file";
    }

    // ------------------------------------------------------------------ writing the mutated checkpoint

    private static string Write(Parts p, string dir, string scratch)
    {
        var prefix = Path.Combine(dir, "ckpt-1");
        // A changed object graph is appended to its shard as a new DT_STRING payload written by our writer.
        if (p.GraphChanged && p.Graph is not null)
        {
            var i = p.Entries.FindIndex(e => e.Key.AsSpan().SequenceEqual(System.Text.Encoding.UTF8.GetBytes(CheckpointKeys.ObjectGraph)));
            if (i >= 0)
            {
                var tmp = Path.Combine(scratch, "graph-" + Guid.NewGuid().ToString("n"));
                using (var w = new TensorBundleWriter(tmp)) { w.AddStrings(CheckpointKeys.ObjectGraph, TensorShape.Scalar, [p.Graph.ToByteArray()]); w.Finish(); }
                var bytes = File.ReadAllBytes(tmp + ".data-00000-of-00001");
                uint crc;
                using (var rr = TensorBundleReader.Open(tmp)) crc = rr.GetEntry(CheckpointKeys.ObjectGraph).Crc32C;
                var e = p.Entries[i].Entry;
                var shard = e.ShardId >= 0 && e.ShardId < p.Data.Count ? e.ShardId : 0;
                if (p.Data.Count > 0)
                {
                    e.ShardId = shard;
                    e.Offset = p.Data[shard].Length;
                    e.Size = bytes.Length;
                    e.Crc32C = crc;
                    p.Data[shard] = [.. p.Data[shard], .. bytes];
                }
                foreach (var f in Directory.GetFiles(scratch, Path.GetFileName(tmp) + "*")) File.Delete(f);
            }
        }
        // Recompute the tensor CRC of every non-string entry whose range lies inside its data file: the checks pass and the
        // mutated dtype/shape/size/offset reach the parsers and the restore logic.
        foreach (var (_, e) in p.Entries)
        {
            if (e.Dtype is DataType.DtString || e.Slices.Count > 0) continue;
            if (e.ShardId < 0 || e.ShardId >= p.Data.Count || e.Offset < 0 || e.Size < 0 || e.Offset > p.Data[e.ShardId].Length - e.Size) continue;
            e.Crc32C = MaskedCrc32C.ComputeMasked(p.Data[e.ShardId].AsSpan((int)e.Offset, (int)e.Size));
        }
        using (var index = new FileStream(prefix + ".index", FileMode.CreateNew))
        {
            var table = new TableBuilder(index);
            table.Add([], p.Header.ToByteArray());
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (key, e) in p.Entries.Where(e => e.Key.Length > 0).OrderBy(e => e.Key, ByteOrder.Instance))
                if (seen.Add(Convert.ToHexString(key))) table.Add(key, e.ToByteArray());
            table.Finish();
        }
        var files = Math.Max(1, Math.Min(p.Header.NumShards, p.Data.Count));
        for (var s = 0; s < p.Data.Count && p.Header.NumShards > 0 && p.Header.NumShards < 16; s++)
            File.WriteAllBytes(BundleNaming.DataFile(prefix, s, p.Header.NumShards), p.Data[s]);
        _ = files;
        if (p.StateFile is not null) File.WriteAllText(Path.Combine(dir, "checkpoint"), p.StateFile);
        return prefix;
    }

    private sealed class ByteOrder : IComparer<byte[]>
    {
        public static readonly ByteOrder Instance = new();
        public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
    }

    // ------------------------------------------------------------------ running one case

    /// <summary>Reads everything through the library's public entry points; returns the outcome class.</summary>
    private static string Exercise(string prefix, string dir, Accelerator accelerator, bool stateFile)
    {
        try
        {
            if (stateFile)
            {
                var state = CheckpointStateFile.Read(dir);
                _ = CheckpointStateFile.LatestCheckpoint(dir);
                if (state is null) return "ok: no state";
            }
            using (var r = TensorBundleReader.Open(prefix))
            {
                foreach (var e in r.Entries)
                {
                    if (e.IsPartitioned)
                    {
                        // Assemble the whole partitioned tensor when it is small (the test's own buffer, not the reader's).
                        if (DTypes.IsFixedSize(e.DType) && e.Shape.ElementCount <= (4 << 20) / DTypes.GetElementSize(e.DType))
                            r.ReadSlice(e.Key, TensorSlice.Full(e.Shape.Rank), new byte[e.Shape.ElementCount * DTypes.GetElementSize(e.DType)]);
                        continue;
                    }
                    if (e.IsSliceEntry) continue;
                    if (e.DType == DType.String) _ = r.ReadStrings(e);
                    else if (DTypes.IsFixedSize(e.DType)) r.ReadTensor(e, (_, _) => { }, 1 << 16);
                    else r.VerifyEntry(e);
                }
                var graph = r.ReadObjectGraph();
                if (graph is not null) _ = CheckpointKeys.NodeDisplayNames(graph);
            }
            using var mirror = LoadedCheckpoint.Restore(prefix, accelerator, log: null);
            mirror.Status.AssertConsumed();
            // A correct result: every variable holds exactly the bytes whose CRC32C the index records (stored order:
            // a big-endian file's values were byte-swapped on the way in, so swap them back for the comparison).
            using (var check = TensorBundleReader.Open(prefix))
                foreach (var v in mirror.Variables)
                {
                    var bytes = v.Variable.ReadBytes();
                    if (check.Header.Endianness != BundleEndianness.Little)
                    {
                        var unit = DTypes.GetElementSize(v.Variable.DType) / (v.Variable.DType is DType.Complex64 or DType.Complex128 ? 2 : 1);
                        for (var i = 0; i + unit <= bytes.Length; i += unit) bytes.AsSpan(i, unit).Reverse();
                    }
                    Assert.Equal(check.GetEntry(v.Key).Crc32C, MaskedCrc32C.ComputeMasked(bytes));
                }
            var again = mirror.Write(Path.Combine(dir, "resaved"));
            using (var back = TensorBundleReader.Open(again))
                foreach (var e in back.Entries) back.VerifyEntry(e);
            return "ok";
        }
        catch (CheckpointFormatException ex)
        {
            Assert.False(string.IsNullOrEmpty(ex.FilePath));
            return "CheckpointFormatException." + ex.Error;
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException or KeyNotFoundException
                                       or CheckpointMismatchException or NotSupportedException)
        {
            return ex.GetType().Name;
        }
    }

    [CorpusFact]
    public async Task StructureAwareMutations_EndInCorrectResultsOrDocumentedErrors_BoundedInTimeAndMemory()
    {
        using var scratch = new TempDir("fuzz");
        using var accelerator = Accelerator.Create(AcceleratorKind.Cpu);
        var outcomes = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var exits = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var mutations = new SortedDictionary<string, int>(StringComparer.Ordinal);
        string[] commands = ["inspect", "verify", "convert", "diff", "restore"];
        var clock = Stopwatch.StartNew();
        var slowest = TimeSpan.Zero;
        var mostAllocated = 0L;
        using var self = Process.GetCurrentProcess();
        var failures = new List<string>();
        for (var seed = FirstSeed; seed < FirstSeed + CaseCount; seed++)
        {
            var random = new Random(seed);
            var parts = Load(s_bases[random.Next(s_bases.Length)]);
            var applied = new List<string>();
            var stateFile = false;
            for (var k = 1 + random.Next(3); k > 0; k--)
            {
                var what = random.Next(20) switch
                {
                    < 9 => MutateEntry(random, parts),
                    < 11 => MutateHeader(random, parts),
                    < 12 => MutateData(random, parts),
                    < 13 => MutateStringPayload(random, parts),
                    < 19 => MutateGraph(random, parts),
                    _ => MutateStateFile(random, parts, "ckpt-1"),
                };
                stateFile |= what == "state file";
                applied.Add(what);
                mutations[what] = mutations.GetValueOrDefault(what) + 1;
            }
            var dir = Path.Combine(scratch.Path, "c" + seed);
            Directory.CreateDirectory(dir);
            var prefix = Write(parts, dir, scratch.Path);
            var label = $"seed {seed} ({parts.Name}: {string.Join(", ", applied)})";

            self.Refresh();
            var peakBefore = self.PeakWorkingSet64;
            var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
            var caseClock = Stopwatch.StartNew();
            string outcome;
            try
            {
                outcome = Exercise(prefix, dir, accelerator, stateFile);
            }
            catch (Exception ex)
            {
                failures.Add($"{label}: undocumented {ex.GetType().Name}: {ex.Message} {ex.StackTrace?.Split('\n').FirstOrDefault(l => l.Contains("CheckpointGpu.", StringComparison.Ordinal) && !l.Contains(".Tests.", StringComparison.Ordinal))?.Trim()}");
                outcome = "UNDOCUMENTED " + ex.GetType().Name;
            }
            var allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
            var command = commands[seed % commands.Length];
            string[] args = command switch
            {
                "convert" => ["convert", stateFile ? dir : prefix, Path.Combine(dir, "conv", "c")],
                "diff" => ["diff", prefix, Path.Combine(TfCorpus.RequireRoot(), parts.Name)],
                "restore" => ["restore", stateFile ? dir : prefix, "--device", "cpu"],
                _ => [command, stateFile ? dir : prefix],
            };
            var cli = await CkptInProcess.RunAsync(args);
            var elapsed = caseClock.Elapsed;
            self.Refresh();
            var peakGrowth = self.PeakWorkingSet64 - peakBefore;

            if (cli.ExitCode is not (0 or 1 or 2)) failures.Add($"{label}: ckpt {command} exited {cli.ExitCode}");
            if (CkptInProcess.LooksLikeCrash(cli.StdErr)) failures.Add($"{label}: ckpt {command}: {cli.StdErr.Split('\n')[0]}");
            if (elapsed >= TimeSpan.FromSeconds(5)) failures.Add($"{label}: took {elapsed.TotalSeconds:F1} s");
            if (allocated >= 256L << 20) failures.Add($"{label}: allocated {allocated >> 20} MiB");
            if (peakGrowth >= 256L << 20) failures.Add($"{label}: peak working set grew by {peakGrowth >> 20} MiB");

            outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
            exits[$"{command} exit {cli.ExitCode}"] = exits.GetValueOrDefault($"{command} exit {cli.ExitCode}") + 1;
            slowest = elapsed > slowest ? elapsed : slowest;
            mostAllocated = Math.Max(mostAllocated, allocated);
            Directory.Delete(dir, recursive: true);
        }
        output.WriteLine($"{CaseCount} structure-aware cases (seeds {FirstSeed}..{FirstSeed + CaseCount - 1}) in {clock.Elapsed.TotalSeconds:F1} s; slowest {slowest.TotalMilliseconds:F0} ms; most allocated {mostAllocated >> 10} KiB");
        output.WriteLine("mutations applied:");
        foreach (var (k, v) in mutations) output.WriteLine($"  {v,5}  {k}");
        output.WriteLine("library outcomes:");
        foreach (var (k, v) in outcomes) output.WriteLine($"  {v,5}  {k}");
        output.WriteLine("ckpt exit codes:");
        foreach (var (k, v) in exits) output.WriteLine($"  {v,5}  {k}");
        foreach (var f in failures.Take(30)) output.WriteLine("FAILURE " + f);
        Assert.True(failures.Count == 0, $"{failures.Count} of {CaseCount} cases failed; first: {failures.FirstOrDefault()}");
        Assert.True(outcomes.Keys.Count(k => k.StartsWith("ok", StringComparison.Ordinal)) > 0, "no mutated case was read successfully: the mutations never get past the checks");
    }
}

// Usage: IteratorChild --dir D --batches N --save-every K [--stop-at S] --seq L --batch B --buffer Z --seed X --shard-size Y --data F [--data F ...]
// Restores the iterator (restore-on-create through CheckpointManager.RestoreOrInitialize), then prints one line per
// batch — "batch <index> <epoch> <ids,...> <crc32c of the bytes>" — and saves after every K-th batch. With --stop-at S
// it stops after batch S-1 without saving again (a crash); otherwise after batch N-1.
using System.Globalization;
using CheckpointGpu;
using CheckpointGpu.Data;
using CheckpointGpu.Format;

var files = new List<string>();
var opts = new Dictionary<string, string>(StringComparer.Ordinal);
for (var i = 0; i + 1 < args.Length; i += 2)
{
    if (args[i] == "--data") files.Add(args[i + 1]);
    else opts[args[i]] = args[i + 1];
}
long Opt(string name) => long.Parse(opts[name], CultureInfo.InvariantCulture);

using var dataset = SequenceDataset.Open(files, (int)Opt("--seq"), new SequenceDatasetOptions { ShardSizeInBytes = Opt("--shard-size") });
var iterator = new DatasetIterator(dataset, (int)Opt("--batch"), (int)Opt("--buffer"), (ulong)Opt("--seed"));
using var checkpoint = new Checkpoint(("iterator", iterator)) { Log = null };
var manager = new CheckpointManager(checkpoint, opts["--dir"], maxToKeep: 2);
var restored = manager.RestoreOrInitialize();
Console.WriteLine($"restored {restored ?? "none"} next {iterator.BatchesProduced}");
var total = Opt("--batches");
var every = Opt("--save-every");
var stop = opts.ContainsKey("--stop-at") ? Opt("--stop-at") : total;
while (iterator.BatchesProduced < stop)
{
    var batch = iterator.GetNext();
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"batch {batch.Index} {batch.Epoch} {string.Join(',', batch.SequenceIds)} {MaskedCrc32C.Compute(batch.Data):x8}"));
    if (iterator.BatchesProduced % every == 0 && iterator.BatchesProduced < stop) manager.Save();
}

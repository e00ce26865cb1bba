using System.CommandLine;
using System.Globalization;
using CheckpointGpu.Cli.Output;
using CheckpointGpu.Format;

namespace CheckpointGpu.Cli.Commands;

/// <summary><c>ckpt convert SRC DST_PREFIX</c>: rewrites a checkpoint through our reader and writer.</summary>
/// <remarks>
/// Keeps keys, dtypes, shapes, values, shard assignment and the order of tensors inside each data
/// file, so a TensorFlow-written checkpoint comes out byte-identical. Every payload is checksum-verified
/// on the way through. The destination is written under temporary names and renamed at the end, so
/// an existing checkpoint at DST_PREFIX is untouched if anything fails. Index blocks are always written
/// uncompressed (as TF's bundle writer does): a source whose index has Snappy-compressed blocks comes out with the
/// same entries and data files but different index bytes; declared shards that hold no entry are not written.
/// </remarks>
internal static class ConvertCommand
{
    /// <summary>Payloads up to this size are staged in one managed buffer; larger ones are streamed.</summary>
    private const long InMemoryLimitBytes = 256L << 20;

    /// <summary>Builds the command; its results go to <paramref name="output"/> (default: the console).</summary>
    public static Command Create(TextWriter? output = null)
    {
        var src = new Argument<string>("SRC") { Description = "Source checkpoint: prefix, .index file, or directory with a 'checkpoint' state file." };
        var dst = new Argument<string>("DST_PREFIX") { Description = "Destination prefix (writes DST_PREFIX.index and DST_PREFIX.data-NNNNN-of-NNNNN)." };
        var compress = new Option<bool>("--compress") { Description = "Write an LZ4-compressed checkpoint (Checkpoint.Gpu only; TensorFlow refuses it). Without it the output is a plain TensorFlow checkpoint, also from a compressed source." };
        var noShuffle = new Option<bool>("--no-shuffle") { Description = "With --compress: no byte-shuffle filter for floating-point tensors." };
        var command = new Command("convert", """
            Rewrite a checkpoint through Checkpoint.Gpu's reader and writer, keeping keys, dtypes, shapes, values,
            shard assignment and data order (a TensorFlow-written checkpoint comes out byte-identical). Index blocks are
            written uncompressed: a source with Snappy-compressed index blocks keeps its entries and data files, not its index bytes.

            A compressed (LZ4) source is decompressed into a plain TensorFlow checkpoint; --compress writes a compressed one.

            Examples:
              ckpt convert ../shared/testdata/tf-checkpoints/obj-sharded2-rl /tmp/copy/ckpt-5
              ckpt convert train/ckpt-3 /tmp/small/ckpt-3 --compress
              ckpt convert /tmp/small/ckpt-3 /tmp/plain/ckpt-3
            """) { src, dst, compress, noShuffle };
        command.SetAction(parse => Run(parse.GetValue(src)!, parse.GetValue(dst)!, output ?? Console.Out,
            parse.GetValue(compress) ? new BundleCompressionOptions { Shuffle = !parse.GetValue(noShuffle) } : null));
        return command;
    }

    // storage: the seam every file operation of the commit protocol goes through (tests inject faults); local when null.
    internal static int Run(string source, string destinationPrefix, TextWriter output, BundleCompressionOptions? compression = null, IShardStorage? storage = null)
    {
        var prefix = CheckpointLocator.Resolve(source);
        var destination = Path.GetFullPath(destinationPrefix);
        if (string.Equals(prefix, destination, StringComparison.Ordinal))
            throw new CliException($"{destination}: source and destination are the same checkpoint.", ExitCodes.UsageOrUnsupported);

        using var reader = TensorBundleReader.Open(prefix);
        if (reader.Header.Endianness != BundleEndianness.Little)
            throw new CliException($"{reader.IndexPath}: big-endian checkpoints cannot be converted yet (the writer always writes little-endian).", ExitCodes.UsageOrUnsupported);

        var entries = reader.Entries;
        var totalBytes = entries.Sum(e => e.Size);
        if (compression is not null || entries.Any(e => e.Compression is not null))
        {
            // Issue 14: (de)compression keeps keys, shards, data order and CRCs (TensorBundle.Convert).
            var header = ByteProgress.Run("convert", totalBytes, add =>
            {
                var h = TensorBundle.Convert(prefix, destination, compression, storage);
                add(totalBytes);
                return h;
            });
            using var written = TensorBundleReader.Open(destination);
            var stored = written.Entries.Sum(e => e.StoredSize);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"converted {entries.Count} entries ({totalBytes:N0} tensor bytes, {stored:N0} stored, {(compression is null ? "plain TensorFlow" : "LZ4-compressed")}, min_consumer {header.MinConsumer}) from {prefix} to {destination}"));
            return ExitCodes.Ok;
        }
        // Shards no entry uses (a header may declare more, e.g. 100,000) are not written as empty files: the used ones are
        // numbered 0..k-1 in order. TF-written checkpoints use every shard, so their layout (and bytes) are unchanged.
        var used = entries.Where(e => !e.IsPartitioned).Select(e => e.ShardId).Distinct().Order().ToArray();
        var shardCount = reader.Header.ShardCount;
        Func<BundleEntry, BundleEntry> renumber = e => e;
        if (used.Length < shardCount)
        {
            var map = used.Select((s, i) => (s, i)).ToDictionary(p => p.s, p => p.i);
            shardCount = Math.Max(1, used.Length);
            renumber = e => e.IsPartitioned ? e : e with { ShardId = map[e.ShardId] };
            output.WriteLine($"note: {reader.Header.ShardCount - used.Length} of {reader.Header.ShardCount} declared shards hold no entry; writing {shardCount} data file(s)");
        }
        var options = new TensorBundleWriterOptions
        {
            ShardCount = shardCount,
            Producer = reader.Header.Producer,
            MinConsumer = reader.Header.MinConsumer,
            BadConsumers = reader.Header.BadConsumers,
            Storage = storage,
        };

        ByteProgress.Run("convert", totalBytes, add =>
        {
            using var writer = new TensorBundleWriter(destination, options);
            // Partitioned full-tensor entries carry only their slice list (no payload).
            foreach (var e in entries.Where(e => e.IsPartitioned))
                writer.AddEncoded(e, source: null);
            // Per shard, in file-offset order: the data files come out in TensorFlow's original layout.
            foreach (var e in reader.EntriesInDataOrder)
            {
                CopyEntry(reader, writer, e, renumber(e));
                add(e.Size);
            }
            writer.Finish();
            return 0;
        });

        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"converted {entries.Count} entries ({totalBytes:N0} bytes, {reader.Header.ShardCount} shard(s)) from {prefix} to {destination}"));
        return ExitCodes.Ok;
    }

    private static void CopyEntry(TensorBundleReader reader, TensorBundleWriter writer, BundleEntry e, BundleEntry written)
    {
        if (e.Size <= InMemoryLimitBytes)
        {
            var payload = new byte[e.Size];
            reader.ReadEncodedPayload(e, (chunk, at) => chunk.CopyTo(payload.AsSpan(checked((int)at))));
            writer.AddEncoded(written, (buffer, at) =>
            {
                var n = (int)Math.Min(buffer.Length, e.Size - at);
                payload.AsSpan(checked((int)at), n).CopyTo(buffer);
                return n;
            });
            return;
        }

        // Large payloads: verify first (one streaming pass), then stream the stored bytes across.
        reader.VerifyEntry(e);
        using var data = File.OpenHandle(reader.GetDataFilePath(e.ShardId), FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
        writer.AddEncoded(written, (buffer, at) =>
        {
            var want = (int)Math.Min(buffer.Length, e.Size - at);
            var n = RandomAccess.Read(data, buffer[..want], e.Offset + at);
            return n > 0 ? n : throw new CheckpointFormatException(CheckpointFormatError.InvalidOffset,
                reader.GetDataFilePath(e.ShardId), $"data file ended while copying (expected {e.Size} bytes at offset {e.Offset})", e.Key, e.ShardId, e.Offset + at, e.Size);
        });
    }
}

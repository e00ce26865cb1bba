using CheckpointGpu.Format.Table;
using Google.Protobuf;

namespace CheckpointGpu.Format;

/// <summary>
/// Operations on whole tensor bundles (TF's free functions in <c>tensorflow/core/util/tensor_bundle/tensor_bundle.cc</c>).
/// </summary>
/// <remarks>Stateless and thread-safe; concurrent calls must not touch the same files.</remarks>
public static partial class TensorBundle
{
    /// <summary>
    /// Merges bundles into one (TF's <c>MergeBundles</c>, used by the <c>MergeV2Checkpoints</c> op after a sharded save;
    /// spec section 1.3 C). The merged index is byte-identical to TensorFlow's for the same inputs.
    /// </summary>
    /// <remarks>
    /// <para><b>Algorithm</b> (TF's, step by step): for each input in the given order, read its header and add its
    /// <c>num_shards</c> to a running total (the first header fixes endianness and version; later ones must match,
    /// the version compared as serialized bytes); then, for every entry in key order: a key seen before is an error
    /// unless both entries are partitioned, in which case the new entry's <c>slices</c> are appended to the stored
    /// entry (dtype and full shape must agree); a new key takes the data file
    /// <c>DataFilename(input, shard_id, input num_shards)</c>, which gets the next merged shard id on first
    /// appearance. (As in TF, this also applies to partitioned full-tensor entries, whose stored <c>shard_id</c> is
    /// 0: they record the merged id of their input's first data file.) Every data file seen is renamed to
    /// <c>DataFilename(output, id, count)</c>, the index is written with header
    /// <c>{num_shards = running total, first endianness, first version}</c>, and the input indexes are deleted.</para>
    /// <para><b>Deliberate difference from TF: atomic publication.</b> TF writes <c>&lt;output&gt;.index</c> directly.
    /// Here every input is read and validated before any file moves; then <see cref="BundleCommit"/> (the protocol every
    /// writer uses, on <see cref="TensorBundleMergeOptions.Storage"/>) writes and flushes the index under a temporary
    /// name, renames the data files, renames the index (the commit point) and flushes the directory.
    /// A reader or a crash therefore sees either no merged index or a complete one whose data files are in place.
    /// If a rename or the index write fails, data files already renamed are moved back (best effort) so the
    /// inputs stay intact, and the exception propagates.</para>
    /// <para>Consistency caveat inherited from TF: an input data file that holds no entry is counted in
    /// <c>num_shards</c> but never renamed. Writers must not produce empty shards (ours never do).</para>
    /// </remarks>
    /// <param name="inputPrefixes">Bundle prefixes to merge, in order (their order fixes shard ids and slice order).</param>
    /// <param name="outputPrefix">Prefix of the merged bundle; its directory is created if missing. Must differ from every input.</param>
    /// <param name="options">Settings; <see cref="TensorBundleMergeOptions.Default"/> when null.</param>
    /// <returns>The merged bundle's header.</returns>
    /// <exception cref="ArgumentException">No inputs, an empty prefix, an input equal to the output, or (with <see cref="TensorBundleMergeOptions.AllowMissingFiles"/>) every input missing.</exception>
    /// <exception cref="FileNotFoundException">An input <c>.index</c> (unless missing inputs are allowed) or a data file to rename does not exist.</exception>
    /// <exception cref="CheckpointFormatException">An input index is corrupt; two inputs hold the same unpartitioned key
    /// (<see cref="CheckpointFormatError.DuplicateKey"/>); partitioned entries disagree on dtype or shape
    /// (<see cref="CheckpointFormatError.InvalidSlice"/>); or headers disagree on endianness
    /// (<see cref="CheckpointFormatError.UnsupportedEndianness"/>) or version (<see cref="CheckpointFormatError.UnsupportedVersion"/>).</exception>
    /// <exception cref="IOException">Renaming, writing or flushing failed; the inputs are left as they were (best effort).</exception>
    public static BundleHeader Merge(IReadOnlyList<string> inputPrefixes, string outputPrefix, TensorBundleMergeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(inputPrefixes);
        ArgumentException.ThrowIfNullOrEmpty(outputPrefix);
        options ??= TensorBundleMergeOptions.Default;
        if (inputPrefixes.Count == 0) throw new ArgumentException("At least one input bundle is required.", nameof(inputPrefixes));
        var outputFull = Path.GetFullPath(outputPrefix);
        foreach (var p in inputPrefixes)
        {
            ArgumentException.ThrowIfNullOrEmpty(p, nameof(inputPrefixes));
            if (string.Equals(Path.GetFullPath(p), outputFull, StringComparison.Ordinal))
                throw new ArgumentException($"Input bundle '{p}' is the output prefix.", nameof(inputPrefixes));
        }

        // Step 1–2: read and validate everything before any file moves.
        var parts = new List<TensorBundlePartIndex>(inputPrefixes.Count);
        foreach (var prefix in inputPrefixes)
        {
            if (options.AllowMissingFiles && !File.Exists(BundleNaming.IndexFile(prefix))) continue;
            var (header, list) = TensorBundleIndex.Read(prefix, options.ReaderOptions);
            parts.Add(new TensorBundlePartIndex(prefix, header, list));
        }
        if (parts.Count == 0)
            throw new ArgumentException("None of the input bundles exists (allow-missing-files merge needs at least one).", nameof(inputPrefixes));
        return MergeCore(parts, outputPrefix, options);
    }

    /// <summary>
    /// Merges bundles whose indexes are already in memory (for example gathered from other processes), with exactly the
    /// rules of <see cref="Merge(IReadOnlyList{string}, string, TensorBundleMergeOptions?)"/>; no input <c>.index</c> file is
    /// read (the inputs' index files, if any exist, are deleted afterwards as in TF). The data files must exist at
    /// <c>DataFilename(part.Prefix, shard, part.Header.ShardCount)</c>.
    /// </summary>
    /// <param name="parts">The inputs in order (their order fixes shard ids and slice order).</param>
    /// <param name="outputPrefix">Prefix of the merged bundle; its directory is created if missing. Must differ from every input.</param>
    /// <param name="options">Settings; <see cref="TensorBundleMergeOptions.Default"/> when null (<see cref="TensorBundleMergeOptions.AllowMissingFiles"/> does not apply).</param>
    /// <returns>The merged bundle's header.</returns>
    /// <exception cref="ArgumentException">No parts, an empty prefix, or a part's prefix equal to the output.</exception>
    /// <exception cref="FileNotFoundException">A data file to rename does not exist.</exception>
    /// <exception cref="CheckpointFormatException">Duplicate unpartitioned keys, disagreeing partitioned entries, endianness or version (as for the file-based overload).</exception>
    /// <exception cref="IOException">Renaming, writing or flushing failed; the inputs are left as they were (best effort).</exception>
    public static BundleHeader Merge(IReadOnlyList<TensorBundlePartIndex> parts, string outputPrefix, TensorBundleMergeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(parts);
        ArgumentException.ThrowIfNullOrEmpty(outputPrefix);
        options ??= TensorBundleMergeOptions.Default;
        if (parts.Count == 0) throw new ArgumentException("At least one input bundle is required.", nameof(parts));
        var outputFull = Path.GetFullPath(outputPrefix);
        foreach (var p in parts)
        {
            ArgumentNullException.ThrowIfNull(p, nameof(parts));
            ArgumentException.ThrowIfNullOrEmpty(p.Prefix, nameof(parts));
            if (string.Equals(Path.GetFullPath(p.Prefix), outputFull, StringComparison.Ordinal))
                throw new ArgumentException($"Input bundle '{p.Prefix}' is the output prefix.", nameof(parts));
        }
        return MergeCore(parts, outputPrefix, options);
    }

    private static BundleHeader MergeCore(IReadOnlyList<TensorBundlePartIndex> parts, string outputPrefix, TensorBundleMergeOptions options)
    {
        var outputFull = Path.GetFullPath(outputPrefix);
        var plan = Plan(parts);
        var outputDir = Path.GetDirectoryName(outputFull)!;

        // Steps 3–4 through the one commit protocol: the parts' data files (written and flushed by their writers) are
        // adopted, the index is written and flushed under a temporary name, then data and index are renamed (the index
        // last: the commit point) and the directory flushed. A failure before the commit point moves the data back.
        var count = plan.DataFiles.Count;
        using (var commit = new BundleCommit(outputPrefix, count, options.Storage, options.FlushToDisk))
        {
            for (var id = 0; id < count; id++) commit.AdoptDataFile(id, plan.DataFiles[id]);
            var sorted = TensorBundleIndex.SortAndValidate(plan.Header, plan.Entries.Select(kv => (kv.Key, kv.Value)));
            using (var ms = new MemoryStream())
            {
                TensorBundleIndex.WriteTable(ms, plan.Header, sorted);
                commit.WriteIndex(ms.GetBuffer().AsSpan(0, (int)ms.Length));
            }
            commit.Publish();
        }

        // Step 5–6: best-effort cleanup of the inputs (unless the caller does it).
        if (!options.DeleteInputIndexes) return plan.Header;
        foreach (var input in plan.ExistingInputs) TensorBundleIndex.TryDelete(BundleNaming.IndexFile(input));
        if (options.DeleteOldDirectories)
        {
            foreach (var dir in plan.ExistingInputs.Select(p => Path.GetDirectoryName(Path.GetFullPath(p))!).Distinct(StringComparer.Ordinal))
            {
                if (string.Equals(dir, outputDir, StringComparison.Ordinal)) continue;
                try { Directory.Delete(dir, recursive: false); }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
            }
        }
        return plan.Header;
    }

    private sealed record MergePlan(BundleHeader Header, Dictionary<byte[], BundleEntry> Entries, List<string> DataFiles, List<string> ExistingInputs);

    /// <summary>TF's MergeBundles rules (see the file-based overload's remarks), over parsed indexes.</summary>
    private static MergePlan Plan(IReadOnlyList<TensorBundlePartIndex> parts)
    {
        var entries = new Dictionary<byte[], BundleEntry>(ByteKeyComparer.Instance);
        var dataFileIds = new Dictionary<string, int>(StringComparer.Ordinal);
        var dataFiles = new List<string>();
        var existing = new List<string>();
        BundleHeader? first = null;
        byte[]? firstVersion = null;
        long total = 0;
        foreach (var (prefix, header, list) in parts)
        {
            var indexPath = BundleNaming.IndexFile(prefix);
            existing.Add(prefix);
            total += header.ShardCount;
            var version = BundleProtoConverter.ToProto(header).Version.ToByteArray();
            if (first is null)
            {
                first = header;
                firstVersion = version;
            }
            else if (header.Endianness != first.Endianness)
            {
                ThrowHelper.Format(CheckpointFormatError.UnsupportedEndianness, indexPath, "cannot merge bundles of different endianness", key: "",
                    comparison: $"first input is {first.Endianness}, this one {header.Endianness}");
            }
            else if (!version.AsSpan().SequenceEqual(firstVersion))
            {
                ThrowHelper.Format(CheckpointFormatError.UnsupportedVersion, indexPath, "cannot merge bundles of different versions", key: "",
                    comparison: $"first input has producer {first.Producer}, min_consumer {first.MinConsumer}; this one producer {header.Producer}, min_consumer {header.MinConsumer}");
            }

            foreach (var entry in list)
            {
                var key = entry.GetKeyBytes();
                if (entries.TryGetValue(key, out var existingEntry))
                {
                    if (!existingEntry.IsPartitioned || !entry.IsPartitioned)
                        ThrowHelper.Format(CheckpointFormatError.DuplicateKey, indexPath, "duplicate tensor encountered while merging bundles", entry.Key,
                            comparison: existingEntry.IsPartitioned
                                ? "an earlier input holds it as a partitioned tensor; this one as an unpartitioned tensor"
                                : "an earlier input already holds it as an unpartitioned tensor");
                    if (existingEntry.DType != entry.DType || existingEntry.Shape != entry.Shape)
                        ThrowHelper.Format(CheckpointFormatError.InvalidSlice, indexPath, "partitioned tensor has a different dtype or full shape in two inputs", entry.Key,
                            comparison: $"{DTypes.GetName(existingEntry.DType)} {existingEntry.Shape} vs {DTypes.GetName(entry.DType)} {entry.Shape}");
                    entries[key] = existingEntry with { Slices = existingEntry.Slices.Concat(entry.Slices).ToArray() };
                    continue;
                }
                var dataFile = Path.GetFullPath(BundleNaming.DataFile(prefix, entry.ShardId, header.ShardCount));
                if (!dataFileIds.TryGetValue(dataFile, out var id))
                {
                    id = dataFiles.Count;
                    dataFileIds[dataFile] = id;
                    dataFiles.Add(dataFile);
                }
                entries[key] = entry with { ShardId = id };
            }
        }
        if (first is null) throw new ArgumentException("At least one input bundle is required.", nameof(parts));
        if (total > int.MaxValue)
            ThrowHelper.Format(CheckpointFormatError.Overflow, BundleNaming.IndexFile(parts[0].Prefix), "merged num_shards overflows int32", length: total);
        var merged = first with { ShardCount = (int)total };
        return new MergePlan(merged, entries, dataFiles, existing);
    }
}

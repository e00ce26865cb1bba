using CheckpointGpu.Format;

namespace CheckpointGpu.Cli;

/// <summary>Turns a user-supplied PATH into a checkpoint prefix.</summary>
/// <remarks>
/// Accepted forms, in this order: an existing prefix (<c>PATH.index</c> exists); a path to the
/// <c>.index</c> file or one of the <c>.data-NNNNN-of-NNNNN</c> files; a directory with a
/// <c>checkpoint</c> state file (its latest checkpoint, as <see cref="CheckpointStateFile.LatestCheckpoint"/>
/// resolves it); a SavedModel directory (<c>variables/variables.index</c>); a directory holding exactly
/// one <c>.index</c> file.
/// </remarks>
internal static class CheckpointLocator
{
    /// <summary>Resolves <paramref name="path"/> to an absolute checkpoint prefix.</summary>
    /// <exception cref="CliException">Nothing usable at <paramref name="path"/> (exit code 2).</exception>
    public static string Resolve(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var full = Path.GetFullPath(path);
        if (File.Exists(full + ".index")) return full;
        if (full.EndsWith(".index", StringComparison.Ordinal) && File.Exists(full)) return full[..^".index".Length];
        var dataAt = full.LastIndexOf(".data-", StringComparison.Ordinal);
        if (dataAt > 0 && File.Exists(full) && File.Exists(full[..dataAt] + ".index")) return full[..dataAt];

        if (Directory.Exists(full))
        {
            if (File.Exists(Path.Combine(full, "checkpoint")))
            {
                var latest = CheckpointStateFile.LatestCheckpoint(full);
                if (latest is not null) return latest;
                throw new CliException($"{Path.Combine(full, "checkpoint")}: the state file names no checkpoint whose .index exists.", ExitCodes.UsageOrUnsupported);
            }
            var savedModel = Path.Combine(full, "variables", "variables");
            if (File.Exists(savedModel + ".index")) return savedModel;
            var indexes = Directory.GetFiles(full, "*.index");
            if (indexes.Length == 1) return indexes[0][..^".index".Length];
            if (indexes.Length > 1)
                throw new CliException($"{full}: directory holds {indexes.Length} checkpoints and no 'checkpoint' state file; name one prefix, e.g. {indexes.Order(StringComparer.Ordinal).First()[..^".index".Length]}", ExitCodes.UsageOrUnsupported);
            throw new CliException($"{full}: no checkpoint found (no 'checkpoint' state file and no .index file).", ExitCodes.UsageOrUnsupported);
        }

        // Let the reader explain legacy V1 single-file checkpoints (PATH exists, PATH.index does not).
        if (File.Exists(full)) return full;
        throw new CliException($"{full}: no such checkpoint ({full}.index does not exist).", ExitCodes.UsageOrUnsupported);
    }
}

using CheckpointGpu.Format;
using Xunit;

namespace CheckpointGpu.TestSupport;

/// <summary>
/// The steps of the one commit protocol (<see cref="BundleCommit"/>), each as a fault to inject through
/// <see cref="FaultInjectingShardStorage"/>, and the checks every save path must pass after each: the previous checkpoint
/// byte for byte, a state file naming a complete checkpoint, and no temporary file left.
/// </summary>
public static class CommitFaults
{
    /// <summary>A protocol step and how to make it fail.</summary>
    /// <param name="Name">The step.</param>
    /// <param name="Arm">Sets the fault on the storage.</param>
    /// <param name="AfterCommitPoint">True for steps after the index rename: the new checkpoint may exist (committed, or its
    /// state file published) — the previous one must still be intact.</param>
    public sealed record Step(string Name, Action<FaultInjectingShardStorage> Arm, bool AfterCommitPoint);

    private static bool IsData(string p) => Path.GetFileName(p).Contains(".data-", StringComparison.Ordinal);

    private static bool IsTemp(string p) => TemporaryFileNames.IsBundleTemporary(Path.GetFileName(p));

    private static bool IsIndexTemp(string p) => IsTemp(p) && Path.GetFileName(p).Contains(".index" + TemporaryFileNames.BundleInfix, StringComparison.Ordinal);

    private static bool IsStateTemp(string p) => TemporaryFileNames.IsStateFileTemporary(Path.GetFileName(p));

    /// <summary>Every step of a bundle's commit (data → fsync → index → fsync → renames → directory fsync).</summary>
    public static IReadOnlyList<Step> BundleSteps { get; } =
    [
        new("create data file", s => s.FailCreateWhen = p => IsData(p) && IsTemp(p), false),
        new("write data", s => s.FailWriteWhen = p => IsData(p) && IsTemp(p), false),
        new("fsync data", s => s.FailFlushWhen = p => IsData(p) && IsTemp(p), false),
        new("create index", s => s.FailCreateWhen = IsIndexTemp, false),
        new("write index", s => s.FailWriteWhen = IsIndexTemp, false),
        new("fsync index", s => s.FailFlushWhen = IsIndexTemp, false),
        new("rename data", s => s.FailMoveWhen = p => IsData(p) && !IsTemp(p), false),
        new("rename index (commit point)", s => s.FailMoveWhen = p => p.EndsWith(BundleNaming.IndexSuffix, StringComparison.Ordinal), false),
        new("fsync directory", s => s.FailFlushDirectoryWhen = _ => true, true),
    ];

    /// <summary>The state-file steps (temporary, fsync, rename, directory fsync).</summary>
    public static IReadOnlyList<Step> StateSteps { get; } =
    [
        new("create state temporary", s => s.FailCreateWhen = IsStateTemp, true),
        new("write state file", s => s.FailWriteWhen = IsStateTemp, true),
        new("fsync state file", s => s.FailFlushWhen = IsStateTemp, true),
        new("rename state file", s => s.FailMoveWhen = p => Path.GetFileName(p) == CheckpointStateFile.FileName, true),
    ];

    /// <summary>Pruning (deleting an old checkpoint's index).</summary>
    public static Step PruneStep { get; } = new("prune old checkpoint", s => s.FailDeleteWhen = p => p.EndsWith(BundleNaming.IndexSuffix, StringComparison.Ordinal), true);

    /// <summary>Removes every fault.</summary>
    /// <param name="storage">The storage.</param>
    public static void Disarm(FaultInjectingShardStorage storage)
    {
        storage.FailCreateWhen = null;
        storage.FailWriteWhen = null;
        storage.FailFlushWhen = null;
        storage.FailMoveWhen = null;
        storage.FailDeleteWhen = null;
        storage.FailFlushDirectoryWhen = null;
    }

    /// <summary>Every file of a checkpoint directory with its bytes (recursive), to compare before and after.</summary>
    /// <param name="directory">The directory.</param>
    /// <returns>Relative path → bytes.</returns>
    public static Dictionary<string, byte[]> Snapshot(string directory) =>
        Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories)
            .Where(f => !f.EndsWith(".lock", StringComparison.Ordinal))   // a manager's directory lock is held exclusively
            .ToDictionary(f => Path.GetRelativePath(directory, f), File.ReadAllBytes, StringComparer.Ordinal);

    /// <summary>
    /// Asserts that after a failed step: every file of <paramref name="before"/> that belongs to <paramref name="previousPrefix"/>
    /// is unchanged; the state file (when <paramref name="stateBefore"/> is given) is either unchanged or names a complete,
    /// readable checkpoint; and no temporary is left anywhere under <paramref name="directory"/>.
    /// </summary>
    /// <param name="step">The step that failed (for messages).</param>
    /// <param name="directory">The checkpoint directory.</param>
    /// <param name="previousPrefix">The checkpoint that existed before the failed save.</param>
    /// <param name="before">The files before the failed save (<see cref="Snapshot"/>).</param>
    /// <param name="stateBefore">The state file's bytes before, or null when there is no state file to check.</param>
    public static void AssertIntact(string step, string directory, string previousPrefix, Dictionary<string, byte[]> before, byte[]? stateBefore)
    {
        var name = Path.GetFileName(previousPrefix);
        foreach (var (rel, bytes) in before)
        {
            var file = Path.GetFileName(rel);
            if (file != name + BundleNaming.IndexSuffix && !BundleNaming.IsDataFileOf(name, file)) continue;
            var path = Path.Combine(directory, rel);
            Assert.True(File.Exists(path), $"[{step}] {rel} of the previous checkpoint is gone.");
            Assert.True(bytes.AsSpan().SequenceEqual(File.ReadAllBytes(path)), $"[{step}] {rel} of the previous checkpoint changed.");
        }
        using (var reader = TensorBundleReader.Open(previousPrefix))
        {
            foreach (var e in reader.Entries.Where(e => !e.IsPartitioned)) reader.VerifyEntry(e);   // every CRC of the previous checkpoint
        }
        if (stateBefore is not null)
        {
            var statePath = Path.Combine(directory, CheckpointStateFile.FileName);
            Assert.True(File.Exists(statePath), $"[{step}] the state file is gone.");
            var now = File.ReadAllBytes(statePath);
            if (!now.AsSpan().SequenceEqual(stateBefore))
            {
                var latest = CheckpointStateFile.LatestCheckpoint(directory);
                Assert.True(latest is not null, $"[{step}] the new state file names no existing checkpoint.");
                using var reader = TensorBundleReader.Open(latest!);
                Assert.NotEmpty(reader.Entries);
            }
        }
        var temps = Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories)
            .Where(f => TemporaryFileNames.IsBundleTemporary(Path.GetFileName(f)) || TemporaryFileNames.IsStateFileTemporary(Path.GetFileName(f)))
            .ToArray();
        Assert.True(temps.Length == 0, $"[{step}] temporaries left: {string.Join(", ", temps.Select(Path.GetFileName))}");
    }
}

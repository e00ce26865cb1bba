using System.Text.RegularExpressions;
using CheckpointGpu.Format;

namespace CheckpointGpu.Pipeline;

/// <summary>
/// Removes what killed saves leave in a checkpoint directory: temporary bundle files
/// (<c>*.index.tempstate&lt;n&gt;</c>, <c>*.data-NNNNN-of-NNNNN.tempstate&lt;n&gt;</c>), temporary state files
/// (<c>checkpoint.tmp&lt;32 hex&gt;</c>) and multi-worker part directories (<c>&lt;prefix&gt;_temp/</c> holding only
/// <c>part-NNNNN-of-NNNNN</c> bundle files and their temporaries). Names are matched exactly against
/// <see cref="TemporaryFileNames"/>; nothing else is ever touched (no checkpoint, no user file, no directory holding
/// anything but part files).
/// </summary>
/// <remarks>
/// Only safe while no other process saves into the directory: <c>CheckpointManager</c> calls it at its first save,
/// while it holds the directory's <see cref="CheckpointDirectoryLock"/>. Best effort: a file that cannot be removed
/// (permissions, a concurrent delete) is skipped. Stateless and thread-safe.
/// </remarks>
public static partial class CheckpointDebris
{
    [GeneratedRegex(@"^part-\d{5,}-of-\d{5,}(\.index|\.data-\d{5,}-of-\d{5,})(\.tempstate\d{1,20})?$", RegexOptions.CultureInvariant)]
    private static partial Regex PartFile();

    /// <summary>Lists the debris in <paramref name="directory"/> (top level, plus the contents of matching <c>_temp/</c> directories).</summary>
    /// <param name="directory">The checkpoint directory.</param>
    /// <param name="stateFileName">The state file's name (default <c>checkpoint</c>).</param>
    /// <returns>Full paths: files, and <c>_temp</c> directories (removed with their contents). Empty when the directory does not exist.</returns>
    /// <exception cref="ArgumentException"><paramref name="directory"/> is empty.</exception>
    public static IReadOnlyList<string> Find(string directory, string stateFileName = CheckpointStateFile.FileName)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var found = new List<string>();
        var dir = Path.GetFullPath(directory);
        try
        {
            foreach (var file in Directory.EnumerateFiles(dir))
            {
                var name = Path.GetFileName(file);
                if (TemporaryFileNames.IsBundleTemporary(name) || TemporaryFileNames.IsStateFileTemporary(name, stateFileName)) found.Add(file);
            }
            foreach (var sub in Directory.EnumerateDirectories(dir, "*_temp"))
                if (IsPartDirectory(sub)) found.Add(sub);
        }
        catch (DirectoryNotFoundException)
        {
            return [];
        }
        found.Sort(StringComparer.Ordinal);
        return found;
    }

    /// <summary>
    /// Removes the debris <see cref="Find"/> lists, except <c>_temp</c> directories named in <paramref name="keep"/> or
    /// accepted by <paramref name="keepDirectory"/> (part directories of multi-worker saves in progress), then flushes the
    /// directory.
    /// </summary>
    /// <param name="directory">The checkpoint directory.</param>
    /// <param name="keep">Full paths of <c>&lt;prefix&gt;_temp</c> directories to leave alone; may be null.</param>
    /// <param name="keepDirectory">Asked for each <c>_temp</c> directory (full path) as it is found, so one that another
    /// process creates while this call runs is judged too; true leaves it alone. May be null.</param>
    /// <param name="stateFileName">The state file's name (default <c>checkpoint</c>).</param>
    /// <param name="storage">Storage seam for deletes and the directory flush; local when null.</param>
    /// <returns>The paths removed.</returns>
    /// <exception cref="ArgumentException"><paramref name="directory"/> is empty.</exception>
    public static IReadOnlyList<string> Remove(string directory, IEnumerable<string>? keep = null, string stateFileName = CheckpointStateFile.FileName,
        IShardStorage? storage = null, Func<string, bool>? keepDirectory = null)
    {
        storage ??= LocalShardStorage.Instance;
        var keepSet = new HashSet<string>((keep ?? []).Select(k => Path.TrimEndingDirectorySeparator(Path.GetFullPath(k))), StringComparer.Ordinal);
        var removed = new List<string>();
        foreach (var path in Find(directory, stateFileName))
        {
            try
            {
                if (Directory.Exists(path))
                {
                    if (keepSet.Contains(path) || keepDirectory?.Invoke(path) == true) continue;
                    foreach (var f in Directory.EnumerateFiles(path)) storage.Delete(f);
                    Directory.Delete(path);
                }
                else
                {
                    storage.Delete(path);
                }
                removed.Add(path);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        if (removed.Count > 0)
        {
            try { storage.FlushDirectory(Path.GetFullPath(directory)); }
            catch (IOException) { }
        }
        return removed;
    }

    /// <summary>A <c>&lt;prefix&gt;_temp</c> directory with no subdirectory and only part bundle files (or nothing).</summary>
    private static bool IsPartDirectory(string path)
    {
        try
        {
            if (Directory.EnumerateDirectories(path).Any()) return false;
            return Directory.EnumerateFiles(path).All(f => PartFile().IsMatch(Path.GetFileName(f)));
        }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }
}

using Xunit;
using System.Runtime.CompilerServices;

namespace CheckpointGpu.TestSupport;

/// <summary>
/// Locates the TensorFlow-written reference checkpoints (`shared/testdata/tf-checkpoints`) that
/// tests read in place. The corpus is never copied into the project.
/// </summary>
/// <remarks>
/// Lookup order: the <c>CKPT_TF_CORPUS</c> environment variable, then <c>../shared/testdata/tf-checkpoints</c>
/// beside the checkout (found by walking up from the test assembly and from this source file).
/// Under <c>CI=true</c> a missing corpus throws instead of skipping: CI must never pass by
/// silently testing nothing.
/// </remarks>
public static class TfCorpus
{
    private static readonly Lazy<string?> s_root = new(() => FindRoot());

    /// <summary>The corpus directory, or <see langword="null"/> when it cannot be found (outside CI only).</summary>
    public static string? Root => s_root.Value;

    /// <summary>True when running under CI (<c>CI=true</c>).</summary>
    public static bool IsCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    /// <summary>Reason to skip corpus tests, or <see langword="null"/> when the corpus is present.</summary>
    /// <exception cref="InvalidOperationException">Under CI when the corpus is missing.</exception>
    public static string? SkipReason
    {
        get
        {
            if (Root is not null) return null;
            if (IsCi)
                throw new InvalidOperationException("CI=true but the TensorFlow corpus was not found: set CKPT_TF_CORPUS or place shared/ beside the checkout.");
            return "TensorFlow reference corpus not found (set CKPT_TF_CORPUS or put ../shared beside the checkout).";
        }
    }

    /// <summary>Returns the corpus root or throws when it is missing.</summary>
    /// <exception cref="InvalidOperationException">The corpus was not found.</exception>
    public static string RequireRoot() =>
        Root ?? throw new InvalidOperationException(SkipReason ?? "TensorFlow corpus not found.");

    /// <summary>Directory of one corpus case, e.g. <c>smv1-tf10-half-plus-three</c>.</summary>
    public static string Case(string name) => Path.Combine(RequireRoot(), name);

    /// <summary>All case directory names, sorted ordinally.</summary>
    public static IReadOnlyList<string> CaseNames()
    {
        var root = RequireRoot();
        return Directory.GetDirectories(root).Select(Path.GetFileName).Where(n => n is not null)
            .Select(n => n!).OrderBy(n => n, StringComparer.Ordinal).ToArray();
    }

    /// <summary>Every checkpoint prefix in the corpus (one per <c>.index</c> file), as (case, prefix) pairs.</summary>
    public static IReadOnlyList<(string Case, string Prefix)> AllPrefixes()
    {
        var root = RequireRoot();
        return Directory.EnumerateFiles(root, "*.index", SearchOption.AllDirectories)
            .Select(p => (Case: Path.GetRelativePath(root, p).Split(Path.DirectorySeparatorChar)[0],
                          Prefix: p[..^".index".Length]))
            .OrderBy(t => t.Prefix, StringComparer.Ordinal).ToArray();
    }

    /// <summary>xunit theory data: every checkpoint prefix, as a path relative to the corpus root.</summary>
    public static TheoryDataRows PrefixRows() => new(AllPrefixesOrEmpty().Select(t => Path.GetRelativePath(RequireRoot(), t.Prefix)));

    private static IReadOnlyList<(string Case, string Prefix)> AllPrefixesOrEmpty() => Root is null
        ? (IsCi ? throw new InvalidOperationException(SkipReason) : Array.Empty<(string, string)>())
        : AllPrefixes();

    private static string? FindRoot([CallerFilePath] string sourceFile = "")
    {
        var env = Environment.GetEnvironmentVariable("CKPT_TF_CORPUS");
        if (!string.IsNullOrEmpty(env))
            return Directory.Exists(env) ? Path.GetFullPath(env) : null;
        foreach (var start in new[] { AppContext.BaseDirectory, Path.GetDirectoryName(sourceFile) ?? "" })
        {
            for (var dir = start; !string.IsNullOrEmpty(dir); dir = Path.GetDirectoryName(dir))
            {
                var candidate = Path.Combine(dir, "shared", "testdata", "tf-checkpoints");
                if (Directory.Exists(candidate)) return candidate;
                var sibling = Path.Combine(dir, "..", "shared", "testdata", "tf-checkpoints");
                if (Directory.Exists(sibling)) return Path.GetFullPath(sibling);
            }
        }
        return null;
    }
}

/// <summary>Theory data of single strings; empty when the corpus is absent outside CI.</summary>
public sealed class TheoryDataRows : TheoryData<string>
{
    /// <summary>Creates rows from values.</summary>
    public TheoryDataRows(IEnumerable<string> values) { foreach (var v in values) Add(v); }
}

/// <summary>A <see cref="FactAttribute"/> that skips (outside CI) when the TF corpus is missing.</summary>
public sealed class CorpusFactAttribute : FactAttribute
{
    /// <summary>Sets <see cref="FactAttribute.Skip"/> when the corpus is absent.</summary>
    public CorpusFactAttribute() { Skip = TfCorpus.SkipReason; }
}

/// <summary>A <see cref="TheoryAttribute"/> that skips (outside CI) when the TF corpus is missing.</summary>
public sealed class CorpusTheoryAttribute : TheoryAttribute
{
    /// <summary>Sets <see cref="FactAttribute.Skip"/> when the corpus is absent.</summary>
    public CorpusTheoryAttribute() { Skip = TfCorpus.SkipReason; }
}

/// <summary>A fresh temporary directory deleted (with retries) on dispose.</summary>
public sealed class TempDir : IDisposable
{
    /// <summary>Full path of the directory.</summary>
    public string Path { get; }

    /// <summary>Creates a unique directory under the system temp folder.</summary>
    public TempDir(string? tag = null)
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ckptgpu-tests", $"{tag ?? "t"}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Path);
    }

    /// <summary>Combines <paramref name="name"/> with the directory path.</summary>
    public string File(string name) => System.IO.Path.Combine(Path, name);

    /// <inheritdoc/>
    public void Dispose()
    {
        for (var i = 0; i < 5; i++)
        {
            try { if (Directory.Exists(Path)) Directory.Delete(Path, recursive: true); return; }
            catch (IOException) { Thread.Sleep(50 * (i + 1)); }
            catch (UnauthorizedAccessException) { Thread.Sleep(50 * (i + 1)); }
        }
    }
}

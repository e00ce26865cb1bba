using System.Runtime.InteropServices;

namespace CheckpointGpu.Data;

/// <summary>
/// Finds real English text present on every machine with the .NET SDK: the XML documentation files of the reference
/// pack, <c>&lt;dotnet root&gt;/packs/Microsoft.NETCore.App.Ref/&lt;version&gt;/ref/net&lt;x.y&gt;/*.xml</c>
/// (about 30 MB for .NET 10).
/// </summary>
public static class SdkReferenceDocs
{
    /// <summary>The searched pattern below the dotnet root, for messages.</summary>
    public const string Pattern = "packs/Microsoft.NETCore.App.Ref/*/ref/net*/*.xml";

    /// <summary>
    /// The dotnet root: <c>DOTNET_ROOT</c> when set and it holds <c>packs/</c>, otherwise the installation the
    /// running runtime belongs to (three levels above <see cref="RuntimeEnvironment.GetRuntimeDirectory"/>,
    /// <c>&lt;root&gt;/shared/Microsoft.NETCore.App/&lt;version&gt;/</c>).
    /// </summary>
    /// <returns>The directory (it may lack a <c>packs</c> folder on a runtime-only installation).</returns>
    public static string FindDotnetRoot()
    {
        var env = Environment.GetEnvironmentVariable("DOTNET_ROOT");
        if (!string.IsNullOrEmpty(env) && Directory.Exists(Path.Combine(env, "packs"))) return Path.GetFullPath(env);
        var runtimeDir = new DirectoryInfo(RuntimeEnvironment.GetRuntimeDirectory());
        return runtimeDir.Parent?.Parent?.Parent?.FullName ?? runtimeDir.FullName;
    }

    /// <summary>
    /// The XML documentation files of the newest reference pack and its newest <c>net*</c> folder, sorted by
    /// ordinal file name (a stable order for <see cref="SequenceDataset.Open"/>).
    /// </summary>
    /// <param name="dotnetRoot">The dotnet root; <see langword="null"/> for <see cref="FindDotnetRoot"/>.</param>
    /// <returns>Full paths, at least one.</returns>
    /// <exception cref="FileNotFoundException">No file matches <see cref="Pattern"/> under the root (the message names the searched directory).</exception>
    public static IReadOnlyList<string> FindXmlFiles(string? dotnetRoot = null)
    {
        var root = dotnetRoot ?? FindDotnetRoot();
        var packs = Path.Combine(root, "packs", "Microsoft.NETCore.App.Ref");
        var searched = Path.Combine(root, Pattern);
        if (Directory.Exists(packs))
        {
            foreach (var version in Directory.GetDirectories(packs).OrderByDescending(d => VersionKey(Path.GetFileName(d))))
            {
                var refDir = Path.Combine(version, "ref");
                if (!Directory.Exists(refDir)) continue;
                foreach (var tfm in Directory.GetDirectories(refDir, "net*").OrderByDescending(d => VersionKey(Path.GetFileName(d)[3..])))
                {
                    var files = Directory.GetFiles(tfm, "*.xml").Where(f => new FileInfo(f).Length > 0).Order(StringComparer.Ordinal).ToArray();
                    if (files.Length > 0) return files;
                }
            }
        }
        throw new FileNotFoundException($"No SDK reference documentation found: nothing matches '{searched}' (install the .NET SDK, set DOTNET_ROOT, or pass a data file).", searched);
    }

    private static Version VersionKey(string name)
    {
        var numeric = new string(name.TakeWhile(c => char.IsAsciiDigit(c) || c == '.').ToArray()).Trim('.');
        return Version.TryParse(numeric.Contains('.', StringComparison.Ordinal) ? numeric : numeric + ".0", out var v) ? v : new Version(0, 0);
    }
}

using System.Diagnostics;
using System.IO.Compression;
using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace CheckpointGpu.Packaging.Tests;

/// <summary>
/// A library user's first hour, automated: pack the libraries into a local folder feed, create a console project in a
/// temporary directory outside this repository (no Directory.Build.props, no CheckpointGpu namespace), restore
/// <c>Checkpoint.Gpu.Nn</c> and <c>Checkpoint.Gpu.Data</c> from that feed, paste the README's C# snippets in verbatim,
/// build and run them.
/// </summary>
public sealed partial class PackedConsumerTests(ITestOutputHelper output)
{
    private static readonly string[] Packages =
        ["Checkpoint.Gpu.Format", "Checkpoint.Gpu.Devices", "Checkpoint.Gpu.Pipeline", "Checkpoint.Gpu", "Checkpoint.Gpu.Nn", "Checkpoint.Gpu.Data", "Checkpoint.Gpu.Mpi"];

    [Fact]
    public void ReadmeSnippets_InAFreshConsoleApp_AgainstThePackedPackages_CompileAndRun()
    {
        var repo = FindRepoRoot();
        var configuration = typeof(PackedConsumerTests).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Release";
        var work = Path.Combine(Path.GetTempPath(), $"ckpt-consumer-{Guid.NewGuid():N}");
        Directory.CreateDirectory(work);
        try
        {
            // A version no cache has seen, so the restore must take the bits packed now.
            var suffix = $"ci.{DateTime.UtcNow:yyyyMMddHHmmss}{Random.Shared.Next(1000):d3}";
            var feed = Path.Combine(work, "feed");
            var filter = Path.Combine(work, "libraries.slnf");
            File.WriteAllText(filter, $$"""
                { "solution": { "path": "{{Path.Combine(repo, "Checkpoint.Gpu.sln")}}",
                  "projects": [{{string.Join(", ", Packages.Select(p => $"\"src/{p}/{p}.csproj\""))}}] } }
                """);
            Run(repo, "dotnet", "pack", filter, "-c", configuration, "--no-build", "-o", feed, $"-p:VersionSuffix={suffix}");
            var version = Path.GetFileName(Directory.GetFiles(feed, "Checkpoint.Gpu.Nn.*.nupkg").Single(f => !f.EndsWith(".snupkg", StringComparison.Ordinal)))
                ["Checkpoint.Gpu.Nn.".Length..^".nupkg".Length];
            Assert.Matches(@"^0\.\d+\.\d+-ci\.", version);
            CheckPackages(feed, version);

            var app = Path.Combine(work, "MyTraining");
            Directory.CreateDirectory(app);
            var globalPackages = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
                ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            File.WriteAllText(Path.Combine(app, "MyTraining.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <ImplicitUsings>enable</ImplicitUsings>
                    <Nullable>enable</Nullable>
                    <RestorePackagesPath>{Path.Combine(work, "packages")}</RestorePackagesPath>
                    <RestoreFallbackFolders>{globalPackages}</RestoreFallbackFolders>
                  </PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="Checkpoint.Gpu.Nn" Version="{version}" />
                    <PackageReference Include="Checkpoint.Gpu.Data" Version="{version}" />
                  </ItemGroup>
                </Project>
                """);
            File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources>
                    <add key="checkpoint-gpu-local" value="{feed}" />
                  </packageSources>
                </configuration>
                """);

            var readme = File.ReadAllText(Path.Combine(repo, "README.md"));
            var quickStart = Section(readme, "## Quick start in C#");
            var blocks = CSharpBlocks(quickStart);
            Assert.True(blocks.Count >= 2, $"expected the quick start and the async snippet, found {blocks.Count} C# blocks");
            var dataReadme = File.ReadAllText(Path.Combine(repo, "src", "Checkpoint.Gpu.Data", "README.md"));
            var dataBlocks = CSharpBlocks(dataReadme);
            Assert.Single(dataBlocks);
            // The async snippet continues the quick start (same variables), as the README presents it.
            WriteSnippet(app, "QuickStart", string.Join("\n", blocks));
            WriteSnippet(app, "DataQuickStart", dataBlocks[0]);
            // The Nn package's NuGet readme repeats the quick start: it must compile too.
            WriteSnippet(app, "NnPackageQuickStart", CSharpBlocks(File.ReadAllText(Path.Combine(repo, "src", "Checkpoint.Gpu.Nn", "PACKAGE.md"))).Single());
            File.WriteAllText(Path.Combine(app, "Program.cs"), """
                await QuickStart.RunAsync();
                await DataQuickStart.RunAsync();
                await NnPackageQuickStart.RunAsync();
                Console.WriteLine("snippets done");
                """);

            Run(app, "dotnet", "build", "-c", "Release", "-nologo", "-v", "q");
            var tmp = Path.Combine(work, "tmp");
            Directory.CreateDirectory(tmp);
            var stdout = Run(app, "dotnet", ["run", "-c", "Release", "--no-build"], new() { ["TMPDIR"] = tmp });
            // The README's printed line, from the quick start's own Console.WriteLine.
            Assert.Contains($"step 200, latest checkpoint {Path.Combine(tmp, "quickstart", "ckpt-4")}", stdout, StringComparison.Ordinal);
            Assert.Contains("snippets done", stdout, StringComparison.Ordinal);
            Assert.True(File.Exists(Path.Combine(tmp, "data-demo", "ckpt-4.index")), "the Data snippet saved 4 checkpoints");
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>Every package: symbols beside it, the preview version, a readme without checkout paths, no invented URLs.</summary>
    private void CheckPackages(string feed, string version)
    {
        foreach (var id in Packages)
        {
            var nupkg = Path.Combine(feed, $"{id}.{version}.nupkg");
            Assert.True(File.Exists(nupkg), $"{nupkg} missing");
            Assert.True(File.Exists(Path.ChangeExtension(nupkg, ".snupkg")), $"{id}: no symbols package");
            using var zip = ZipFile.OpenRead(nupkg);
            var nuspec = ReadEntry(zip, $"{id}.nuspec");
            Assert.Contains("<readme>README.md</readme>", nuspec, StringComparison.Ordinal);
            Assert.DoesNotContain("example.invalid", nuspec, StringComparison.Ordinal);
            var readme = ReadEntry(zip, "README.md");
            Assert.StartsWith("# ", readme, StringComparison.Ordinal);
            Assert.DoesNotContain("../", readme, StringComparison.Ordinal);
            Assert.DoesNotMatch(@"\b(src|tests|perf)/Checkpoint", readme);
            Assert.Contains($"lib/net10.0/{id}.dll", zip.Entries.Select(e => e.FullName));
            output.WriteLine($"{id} {version}: readme {readme.Length} chars, symbols ok");
        }
    }

    private static string ReadEntry(ZipArchive zip, string name)
    {
        var entry = zip.GetEntry(name) ?? throw new Xunit.Sdk.XunitException($"{name} missing from the package");
        using var reader = new StreamReader(entry.Open(), Encoding.UTF8);
        return reader.ReadToEnd();
    }

    private static string Section(string markdown, string heading)
    {
        var start = markdown.IndexOf(heading, StringComparison.Ordinal);
        Assert.True(start >= 0, $"README has no '{heading}' section");
        var next = markdown.IndexOf("\n## ", start + heading.Length, StringComparison.Ordinal);
        return next < 0 ? markdown[start..] : markdown[start..next];
    }

    private static List<string> CSharpBlocks(string markdown) =>
        CSharpBlock().Matches(markdown).Select(m => m.Groups[1].Value).ToList();

    [GeneratedRegex(@"```csharp\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex CSharpBlock();

    /// <summary>Wraps snippet text in a method, hoisting its <c>using</c> directives (not <c>using var</c> declarations) to the file's top.</summary>
    private static void WriteSnippet(string app, string className, string code)
    {
        var directives = new List<string>();
        var body = new StringBuilder();
        foreach (var line in code.Split('\n'))
        {
            if (UsingDirective().IsMatch(line)) directives.Add(line.Trim());
            else body.Append("        ").AppendLine(line);
        }
        var text = $$"""
            {{string.Join("\n", directives.Distinct())}}
            #pragma warning disable CS1998
            internal static class {{className}}
            {
                public static async Task RunAsync()
                {
            {{body}}
                }
            }
            """;
        File.WriteAllText(Path.Combine(app, className + ".cs"), text);
    }

    [GeneratedRegex(@"^\s*using\s+(static\s+)?[A-Za-z_][A-Za-z0-9_.]*\s*;\s*$")]
    private static partial Regex UsingDirective();

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Checkpoint.Gpu.sln"))) return dir.FullName;
        throw new InvalidOperationException($"No Checkpoint.Gpu.sln above {AppContext.BaseDirectory}.");
    }

    private string Run(string workingDirectory, string file, params string[] args) => Run(workingDirectory, file, args, []);

    private string Run(string workingDirectory, string file, string[] args, Dictionary<string, string> env)
    {
        var psi = new ProcessStartInfo(file) { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env) psi.Environment[k] = v;
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        var watch = Stopwatch.StartNew();
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"'{file} {string.Join(' ', args)}' did not finish within 5 minutes.");
        }
        var text = stdout.GetAwaiter().GetResult();
        output.WriteLine($"$ {file} {string.Join(' ', args)}  ({watch.Elapsed.TotalSeconds:F1} s)");
        Assert.True(process.ExitCode == 0, $"'{file} {string.Join(' ', args)}' exited with {process.ExitCode}:\n{text}\n{stderr.GetAwaiter().GetResult()}");
        return text;
    }
}

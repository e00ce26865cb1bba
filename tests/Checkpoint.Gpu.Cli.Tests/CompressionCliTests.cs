using System.Text.Json;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Cli.Tests;

/// <summary>Issue 14: <c>ckpt convert --compress</c>, <c>ckpt inspect</c> of a compressed checkpoint, and back to TensorFlow's bytes.</summary>
public sealed class CompressionCliTests
{
    [CorpusFact]
    public void ConvertCompress_InspectShowsRatio_VerifyPasses_ConvertBackIsTensorFlowsBytes()
    {
        using var tmp = new TempDir("lz4cli");
        var source = Path.Combine(TfCorpus.RequireRoot(), "obj-sharded2-rl", "ckpt-5");
        var compressed = tmp.File("c");
        var plain = tmp.File("p");
        var r = CkptProcess.Run("convert", source, compressed, "--compress");
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);

        r = CkptProcess.Run("inspect", compressed, "--json");
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        using (var doc = JsonDocument.Parse(r.StdOut))
        {
            Assert.Equal(2, doc.RootElement.GetProperty("header").GetProperty("min_consumer").GetInt32());
            var withCompression = doc.RootElement.GetProperty("entries").EnumerateArray()
                .Where(e => e.TryGetProperty("compression", out _)).ToArray();
            Assert.NotEmpty(withCompression);
            foreach (var e in withCompression)
            {
                var c = e.GetProperty("compression");
                var expected = e.GetProperty("size").GetInt64() / (double)c.GetProperty("stored_size").GetInt64();
                Assert.Equal(expected, c.GetProperty("ratio").GetDouble(), 3);
            }
        }
        r = CkptProcess.Run("inspect", compressed);
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        Assert.Contains("compression LZ4", r.StdOut, StringComparison.Ordinal);
        Assert.Contains("ratio", r.StdOut, StringComparison.Ordinal);

        r = CkptProcess.Run("verify", compressed);
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);

        r = CkptProcess.Run("convert", compressed, plain);
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        foreach (var suffix in new[] { ".index", ".data-00000-of-00002", ".data-00001-of-00002" })
            Assert.Equal(File.ReadAllBytes(source + suffix), File.ReadAllBytes(plain + suffix));
    }
}

using System.Collections.Concurrent;
using System.Diagnostics;
using CheckpointGpu.Cli.Plots;
using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.Pipeline;
using CheckpointGpu.TestSupport;
using SkiaSharp;

namespace CheckpointGpu.Cli.Tests;

/// <summary>The PNGs of <c>ckpt demo --plot</c> and <c>ckpt bench --plot</c>: produced, decodable, of plausible size and content.</summary>
public sealed class PlotTests
{
    [Fact]
    public void DemoPlot_FromTheRealDemo_IsADecodablePngWithTheCurvesAndTheCrashMarked()
    {
        using var tmp = new TempDir("demo-plot");
        var png = Path.Combine(tmp.Path, "plots", "demo.png");
        var r = CkptProcess.Run("demo", "--steps", "40", "--every", "10", "--params", "1500", "--dir", Path.Combine(tmp.Path, "run"), "--plot", png);
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        Assert.Contains(png, r.StdOut);
        using var bitmap = Decode(png);
        Assert.Equal(PlotImage.Width, bitmap.Width);
        Assert.Equal(700, bitmap.Height);
        Assert.True(CountNear(bitmap, new SKColor(0xff, 0x00, 0x00)) > 200, "the crash line (red) is missing");
        Assert.True(CountNear(bitmap, new SKColor(0x1f, 0x77, 0xb4)) > 500, "the uninterrupted curve (blue) is missing");
        Assert.True(CountNear(bitmap, new SKColor(0xff, 0x7f, 0x0e)) > 100, "the resumed curve (orange) is missing");
    }

    [Fact]
    public async Task BenchPlot_RunsAndARealTracedSave_IsADecodablePngWithBarsAndTimeline()
    {
        // A real save through the pipeline, traced, converted to the benchmark's JSON lines.
        using var tmp = new TempDir("bench-plot");
        using var acc = Accelerator.Create(AcceleratorKind.Cpu);
        using var buffer = acc.Allocate(3 << 20);
        var events = new ConcurrentQueue<SaveTraceEvent>();
        await using (var pipeline = new CheckpointPipeline(acc, new CheckpointPipelineOptions { SlotSizeInBytes = 256 << 10, SlotCount = 4, SaveTrace = events.Enqueue }))
        {
            var plan = SavePlan.Create([new SaveItem("w/.ATTRIBUTES/VARIABLE_VALUE", DType.Float, new TensorShape(3 << 18), SaveSource.FromDevice(buffer.AsView()))]);
            await pipeline.QueueSave(Path.Combine(tmp.Path, "ckpt"), plan).Completion;
        }
        var start = events.Min(e => e.StartTimestamp);
        double Ms(long ts) => (ts - start) * 1000.0 / Stopwatch.Frequency;
        var lines = new List<string>
        {
            """{"name":"run","run":0,"save_gbps":1.21,"fio_write_gbps":1.3,"restore_gbps":1.7,"fio_read_gbps":1.9}""",
            """{"name":"run","run":1,"save_gbps":1.18,"fio_write_gbps":1.35,"restore_gbps":1.65,"fio_read_gbps":2.0}""",
            """{"name":"ratios","device":"cpu","bytes":3145728,"layout":"default","tensors":1}""",
            "# not json: ignored",
        };
        lines.AddRange(events.Select(e => System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["name"] = "trace", ["stage"] = e.Stage switch { SaveTraceStage.DeviceCopy => "copy", SaveTraceStage.Checksum => "checksum", _ => "write" },
            ["slot"] = e.Slot, ["writer"] = e.Writer, ["start_ms"] = Ms(e.StartTimestamp), ["end_ms"] = Ms(e.EndTimestamp),
        })));
        var (runs, trace, title) = BenchPlot.Parse(lines);
        Assert.Equal(2, runs.Count);
        Assert.Equal(events.Count, trace.Count);
        Assert.Contains("default layout", title);
        var png = Path.Combine(tmp.Path, "bench.png");
        BenchPlot.Render(runs, trace, title, png);
        using var bitmap = Decode(png);
        Assert.Equal(PlotImage.Width, bitmap.Width);
        Assert.True(bitmap.Height >= 420 + 360);
        Assert.True(CountNear(bitmap, new SKColor(0x2c, 0xa0, 0x2c)) > 1000, "save bars / write stages (green) are missing");
        Assert.True(CountNear(bitmap, new SKColor(0x1f, 0x77, 0xb4)) > 1000, "restore bars / copy stages (blue) are missing");
    }

    [Fact]
    public void BenchPlot_NoTrace_CliExceptionNotAnEmptyPicture()
    {
        var (runs, trace, title) = BenchPlot.Parse(["""{"name":"run","run":0,"save_gbps":1,"fio_write_gbps":1,"restore_gbps":1,"fio_read_gbps":1}"""]);
        var ex = Assert.Throws<CliException>(() => BenchPlot.Render(runs, trace, title, Path.Combine(Path.GetTempPath(), "never.png")));
        Assert.Contains("0 trace events", ex.Message);
    }

    /// <summary>Decodes the file as an image (not trusting its name) and checks it is a PNG of plausible size.</summary>
    private static SKBitmap Decode(string path)
    {
        Assert.True(File.Exists(path), $"{path} was not written");
        var bytes = File.ReadAllBytes(path);
        Assert.True(bytes.Length > 10_000, $"{path}: only {bytes.Length} bytes");
        using var codec = SKCodec.Create(new MemoryStream(bytes));
        Assert.NotNull(codec);
        Assert.Equal(SKEncodedImageFormat.Png, codec.EncodedFormat);
        var bitmap = SKBitmap.Decode(bytes);
        Assert.NotNull(bitmap);
        return bitmap;
    }

    private static int CountNear(SKBitmap bitmap, SKColor color)
    {
        var n = 0;
        for (var y = 0; y < bitmap.Height; y++)
            for (var x = 0; x < bitmap.Width; x++)
            {
                var p = bitmap.GetPixel(x, y);
                if (Math.Abs(p.Red - color.Red) + Math.Abs(p.Green - color.Green) + Math.Abs(p.Blue - color.Blue) < 30) n++;
            }
        return n;
    }
}

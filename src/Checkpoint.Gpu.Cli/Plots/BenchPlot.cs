using System.Globalization;
using System.Text.Json;
using ScottPlot;

namespace CheckpointGpu.Cli.Plots;

/// <summary>
/// <c>ckpt bench --plot</c>: from the benchmark's JSON lines, save and restore throughput against fio for each run
/// (bars), and the timeline of one traced save: device copy, checksum and write per staging-ring slot over time.
/// </summary>
internal static class BenchPlot
{
    private static readonly Color CopyColor = new(0x1f, 0x77, 0xb4);
    private static readonly Color ChecksumColor = new(0xff, 0x7f, 0x0e);
    private static readonly Color WriteColor = new(0x2c, 0xa0, 0x2c);
    private static readonly Color FioColor = new(0x99, 0x99, 0x99);

    /// <summary>One repeat: our save and restore next to fio's write and read of the same bytes, GB/s.</summary>
    public sealed record Run(int Index, double SaveGbps, double FioWriteGbps, double RestoreGbps, double FioReadGbps);

    /// <summary>One traced stage: slot, writer, times in milliseconds from the save's first event.</summary>
    public sealed record Stage(string Name, int Slot, int Writer, double StartMs, double EndMs);

    /// <summary>Parses the lines named <c>run</c>, <c>trace</c> and <c>ratios</c>; other lines are ignored.</summary>
    public static (List<Run> Runs, List<Stage> Trace, string Title) Parse(IEnumerable<string> jsonLines)
    {
        var runs = new List<Run>();
        var trace = new List<Stage>();
        var title = "ckpt bench";
        foreach (var line in jsonLines)
        {
            if (!line.StartsWith('{')) continue;
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            switch (r.TryGetProperty("name", out var n) ? n.GetString() : null)
            {
                case "run":
                    runs.Add(new Run(r.GetProperty("run").GetInt32(), r.GetProperty("save_gbps").GetDouble(), r.GetProperty("fio_write_gbps").GetDouble(),
                        r.GetProperty("restore_gbps").GetDouble(), r.GetProperty("fio_read_gbps").GetDouble()));
                    break;
                case "trace":
                    trace.Add(new Stage(r.GetProperty("stage").GetString()!, r.GetProperty("slot").GetInt32(), r.GetProperty("writer").GetInt32(),
                        r.GetProperty("start_ms").GetDouble(), r.GetProperty("end_ms").GetDouble()));
                    break;
                case "ratios":
                    title = string.Create(CultureInfo.InvariantCulture,
                        $"{(r.TryGetProperty("layout", out var l) ? l.GetString() : "default")} layout, {r.GetProperty("bytes").GetInt64() / 1e9:F2} GB, {(r.TryGetProperty("tensors", out var t) ? t.GetInt32() : 0):N0} tensors, {r.GetProperty("device").GetString()}");
                    break;
            }
        }
        return (runs, trace, title);
    }

    /// <summary>Draws the PNG.</summary>
    /// <exception cref="CliException">No run or no trace in the lines (the benchmark failed or was not traced).</exception>
    public static void Render(IReadOnlyList<Run> runs, IReadOnlyList<Stage> trace, string title, string path)
    {
        if (runs.Count == 0 || trace.Count == 0)
            throw new CliException($"--plot: the benchmark reported {runs.Count} runs and {trace.Count} trace events; nothing to draw.", ExitCodes.DataProblem);

        var bars = new Plot();
        var series = new (string Label, Color Color, Func<Run, double> Value, double Offset)[]
        {
            ("save (ours)", WriteColor, r => r.SaveGbps, -0.3), ("fio write", FioColor, r => r.FioWriteGbps, -0.1),
            ("restore (ours)", CopyColor, r => r.RestoreGbps, 0.1), ("fio read", FioColor.WithAlpha(150), r => r.FioReadGbps, 0.3),
        };
        foreach (var (label, color, value, offset) in series)
        {
            var barList = runs.Select(r => new Bar { Position = r.Index + offset, Value = value(r), FillColor = color, Size = 0.18 }).ToList();
            var plot = bars.Add.Bars(barList);
            plot.LegendText = label;
        }
        bars.Axes.SetLimitsY(0, runs.Max(r => new[] { r.SaveGbps, r.FioWriteGbps, r.RestoreGbps, r.FioReadGbps }.Max()) * 1.25);
        bars.Axes.Bottom.SetTicks(runs.Select(r => (double)r.Index).ToArray(), runs.Select(r => $"run {r.Index + 1}").ToArray());
        bars.Title($"Durable save and cold restore vs fio, GB/s ({title})");
        bars.YLabel("GB/s");
        bars.ShowLegend(Alignment.UpperRight);

        var timeline = new Plot();
        var slots = trace.Max(s => s.Slot) + 1;
        foreach (var s in trace)
        {
            // Each slot is a row; its three stages are three lanes, so overlapping stages of one slot stay visible.
            var (lane, color) = s.Name switch { "copy" => (0, CopyColor), "checksum" => (1, ChecksumColor), _ => (2, WriteColor) };
            var row = s.Slot < 0 ? slots : s.Slot;
            var bottom = row + lane * 0.3 + 0.05;
            var rect = timeline.Add.Rectangle(s.StartMs, Math.Max(s.EndMs, s.StartMs + 0.01), bottom, bottom + 0.25);
            rect.FillColor = color;
            rect.LineWidth = 0;
        }
        timeline.Legend.ManualItems.Add(new LegendItem { LabelText = "device copy", FillColor = CopyColor });
        timeline.Legend.ManualItems.Add(new LegendItem { LabelText = "checksum", FillColor = ChecksumColor });
        timeline.Legend.ManualItems.Add(new LegendItem { LabelText = "write", FillColor = WriteColor });
        timeline.ShowLegend(Alignment.UpperRight);
        timeline.Axes.Left.SetTicks(Enumerable.Range(0, slots).Select(i => i + 0.5).ToArray(), Enumerable.Range(0, slots).Select(i => $"slot {i}").ToArray());
        timeline.Axes.SetLimitsY(0, slots + 0.4);
        timeline.Title($"One save, stage by stage per staging-ring slot ({trace.Count} events)");
        timeline.XLabel("milliseconds since the save started");
        PlotImage.SavePng(path, (bars, 420), (timeline, Math.Clamp(120 + 40 * slots, 360, 900)));
    }
}

using ScottPlot;

namespace CheckpointGpu.Cli.Plots;

/// <summary><c>ckpt demo --plot</c>: the uninterrupted and the resumed loss curves over each other, checkpoints and the crash marked.</summary>
internal static class DemoPlot
{
    /// <summary>Draws the PNG.</summary>
    /// <param name="straight">First step and per-step losses of the uninterrupted run.</param>
    /// <param name="crashed">First step and losses of the run that crashed.</param>
    /// <param name="resumed">First step and losses of the resumed run.</param>
    /// <param name="checkpointSteps">Steps at which the uninterrupted run saved.</param>
    /// <param name="crashStep">The step the crashed run stopped at.</param>
    /// <param name="path">PNG path.</param>
    public static void Render((long FirstStep, float[] Losses) straight, (long FirstStep, float[] Losses) crashed, (long FirstStep, float[] Losses) resumed,
        IReadOnlyList<long> checkpointSteps, long crashStep, string path)
    {
        var plot = new Plot();
        foreach (var step in checkpointSteps)
        {
            var line = plot.Add.VerticalLine(step);
            line.Color = Colors.Gray.WithAlpha(120);
            line.LineWidth = 1;
            line.LinePattern = LinePattern.Dotted;
        }
        var crash = plot.Add.VerticalLine(crashStep);
        crash.Color = Colors.Red;
        crash.LineWidth = 2;
        crash.LegendText = $"crash (step {crashStep})";

        Add(plot, straight, "uninterrupted", new Color(0x1f, 0x77, 0xb4), 5, LinePattern.Solid);
        Add(plot, crashed, "crashed run", new Color(0xd6, 0x27, 0x28).WithAlpha(160), 2, LinePattern.Solid);
        Add(plot, resumed, $"resumed from step {resumed.FirstStep - 1} (restore-on-create)", new Color(0xff, 0x7f, 0x0e), 2, LinePattern.Dashed);
        var checkpoints = plot.Add.Scatter(checkpointSteps.Select(s => (double)s).ToArray(),
            checkpointSteps.Select(s => Log(straight.Losses[(int)Math.Clamp(s - straight.FirstStep, 0, straight.Losses.Length - 1)])).ToArray());
        checkpoints.LineWidth = 0;
        checkpoints.MarkerSize = 9;
        checkpoints.MarkerShape = MarkerShape.FilledSquare;
        checkpoints.Color = Colors.Black;
        checkpoints.LegendText = $"checkpoints ({checkpointSteps.Count})";

        plot.Title("ckpt demo: the resumed loss curve lies on the uninterrupted one");
        plot.XLabel("training step");
        plot.YLabel("log10(loss)");
        plot.ShowLegend(Alignment.UpperRight);
        PlotImage.SavePng(path, (plot, 700));
    }

    // Losses fall by orders of magnitude: plotted as log10 (ScottPlot 5 has no log axis; it plots transformed data).
    private static double Log(float loss) => Math.Log10(Math.Max(loss, 1e-12f));

    private static void Add(Plot plot, (long FirstStep, float[] Losses) run, string label, Color color, float width, LinePattern pattern)
    {
        var xs = Enumerable.Range(0, run.Losses.Length).Select(i => (double)(run.FirstStep + i)).ToArray();
        var ys = run.Losses.Select(Log).ToArray();
        var scatter = plot.Add.ScatterLine(xs, ys);
        scatter.Color = color;
        scatter.LineWidth = width;
        scatter.LinePattern = pattern;
        scatter.LegendText = label;
    }
}

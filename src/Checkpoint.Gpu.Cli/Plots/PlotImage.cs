using ScottPlot;
using SkiaSharp;

namespace CheckpointGpu.Cli.Plots;

/// <summary>Renders ScottPlot plots to one PNG, stacked vertically (SkiaSharp composes the panels).</summary>
internal static class PlotImage
{
    public const int Width = 1400;

    /// <summary>Writes <paramref name="panels"/> (plot, height in pixels) one below the other to <paramref name="path"/>.</summary>
    public static void SavePng(string path, params (Plot Plot, int Height)[] panels)
    {
        var total = panels.Sum(p => p.Height);
        using var surface = SKSurface.Create(new SKImageInfo(Width, total));
        surface.Canvas.Clear(SKColors.White);
        var y = 0;
        foreach (var (plot, height) in panels)
        {
            using var bitmap = SKBitmap.Decode(plot.GetImageBytes(Width, height, ImageFormat.Png));
            surface.Canvas.DrawBitmap(bitmap, 0, y);
            y += height;
        }
        using var image = surface.Snapshot();
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        using var file = File.Create(full);
        data.SaveTo(file);
    }
}

using System.Text;

namespace CheckpointGpu.Cli.Output;

/// <summary>
/// Plain left/right-aligned columns: readable on a terminal and greppable when redirected (keys are
/// often longer than a terminal is wide, so nothing is wrapped or truncated).
/// </summary>
internal sealed class TextTable(params string[] headers)
{
    private readonly List<string[]> _rows = [];
    private readonly bool[] _rightAligned = new bool[headers.Length];

    /// <summary>Right-aligns column <paramref name="index"/> (numbers).</summary>
    public TextTable AlignRight(params int[] index)
    {
        foreach (var i in index) _rightAligned[i] = true;
        return this;
    }

    public void Add(params string[] cells) => _rows.Add(cells);

    public void WriteTo(TextWriter writer)
    {
        var widths = headers.Select(h => h.Length).ToArray();
        foreach (var row in _rows)
            for (var i = 0; i < row.Length && i < widths.Length; i++) widths[i] = Math.Max(widths[i], row[i].Length);
        WriteRow(writer, headers, widths);
        WriteRow(writer, widths.Select(w => new string('-', w)).ToArray(), widths);
        foreach (var row in _rows) WriteRow(writer, row, widths);
    }

    private void WriteRow(TextWriter writer, string[] cells, int[] widths)
    {
        var sb = new StringBuilder();
        for (var i = 0; i < widths.Length; i++)
        {
            var cell = i < cells.Length ? cells[i] : "";
            if (i > 0) sb.Append("  ");
            var last = i == widths.Length - 1;
            sb.Append(_rightAligned[i] ? cell.PadLeft(widths[i]) : last ? cell : cell.PadRight(widths[i]));
        }
        writer.WriteLine(sb.ToString().TrimEnd());
    }
}

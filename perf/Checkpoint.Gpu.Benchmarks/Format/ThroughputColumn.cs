using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace CheckpointGpu.Benchmarks.Format;

/// <summary>Adds a "GB/s" column (10^9 bytes per second) computed from the benchmark's <c>SizeInBytes</c> parameter and its mean time.</summary>
public sealed class ThroughputColumn : IColumn
{
    /// <inheritdoc/>
    public string Id => "Throughput";
    /// <inheritdoc/>
    public string ColumnName => "GB/s";
    /// <inheritdoc/>
    public bool AlwaysShow => true;
    /// <inheritdoc/>
    public ColumnCategory Category => ColumnCategory.Custom;
    /// <inheritdoc/>
    public int PriorityInCategory => 0;
    /// <inheritdoc/>
    public bool IsNumeric => true;
    /// <inheritdoc/>
    public UnitType UnitType => UnitType.Dimensionless;
    /// <inheritdoc/>
    public string Legend => "Throughput in GB/s (10^9 bytes/s) of SizeInBytes per operation";

    /// <inheritdoc/>
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    /// <inheritdoc/>
    public bool IsAvailable(Summary summary) => true;

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var size = benchmarkCase.Parameters.Items.FirstOrDefault(p => p.Name == "SizeInBytes")?.Value;
        var stats = summary[benchmarkCase]?.ResultStatistics;
        if (size is null || stats is null || stats.Mean <= 0) return "-";
        var bytes = Convert.ToDouble(size, System.Globalization.CultureInfo.InvariantCulture);
        return (bytes / stats.Mean).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture); // bytes/ns = GB/s
    }
}

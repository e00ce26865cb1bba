using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace CheckpointGpu.Benchmarks;

/// <summary>GB/s (10^9 bytes per second) = the <c>SizeInBytes</c> parameter divided by the mean time of one operation.</summary>
public sealed class ThroughputColumn : IColumn
{
    /// <inheritdoc/>
    public string Id => nameof(ThroughputColumn);

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
    public string Legend => "Throughput in GB/s (10^9 bytes/s): SizeInBytes / Mean";

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var mean = summary[benchmarkCase]?.ResultStatistics?.Mean;
        var size = benchmarkCase.Parameters["SizeInBytes"];
        if (mean is null or <= 0 || size is null) return "-";
        var bytes = Convert.ToDouble(size, System.Globalization.CultureInfo.InvariantCulture);
        return (bytes / mean.Value).ToString("F2", System.Globalization.CultureInfo.InvariantCulture); // bytes/ns == GB/s
    }

    /// <inheritdoc/>
    public bool IsAvailable(Summary summary) => true;

    /// <inheritdoc/>
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
}

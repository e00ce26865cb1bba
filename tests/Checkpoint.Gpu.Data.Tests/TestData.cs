using CheckpointGpu.Format;

namespace CheckpointGpu.Data.Tests;

/// <summary>Real text for the tests: the smallest XML documentation files of the SDK's reference pack.</summary>
internal static class TestData
{
    public const int SequenceLength = 64;
    public const long ShardSize = 4096;
    public const int BatchSize = 16;
    public const int ShuffleBuffer = 64;
    public const ulong Seed = 20261203;

    /// <summary>The 8 smallest SDK XML files (about 60 KB): several shards, several epochs in a few hundred batches.</summary>
    public static IReadOnlyList<string> SmallXmlFiles { get; } =
        SdkReferenceDocs.FindXmlFiles().OrderBy(f => new FileInfo(f).Length).ThenBy(f => f, StringComparer.Ordinal).Take(8).Order(StringComparer.Ordinal).ToArray();

    public static SequenceDataset OpenSmall() =>
        SequenceDataset.Open(SmallXmlFiles, SequenceLength, new SequenceDatasetOptions { ShardSizeInBytes = ShardSize });

    public static DatasetIterator NewIterator(SequenceDataset dataset) => new(dataset, BatchSize, ShuffleBuffer, Seed);

    /// <summary>The line the child process prints for a batch.</summary>
    public static string Line(SequenceBatch b) => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"batch {b.Index} {b.Epoch} {string.Join(',', b.SequenceIds)} {MaskedCrc32C.Compute(b.Data):x8}");
}

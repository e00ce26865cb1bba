namespace CheckpointGpu.Format;

/// <summary>
/// Limits and switches for <see cref="TensorBundleReader"/> when reading untrusted files (STYLE.md B3/A6.2).
/// Every limit is checked before anything is allocated by a length read from a file.
/// </summary>
/// <remarks>Init-only; an instance may be shared between readers and threads.</remarks>
public sealed class TensorBundleReaderOptions
{
    private readonly long _maxIndexFileBytes = 1L << 30;
    private readonly int _maxEntryCount = 10_000_000;
    private readonly int _maxKeyLength = 1 << 16;
    private readonly int _maxRank = 254;
    private readonly long _maxTensorBytes = 1L << 40;
    private readonly int _maxObjectGraphBytes = 256 << 20;
    private readonly int _maxStringElementBytes = 1 << 30;
    private readonly int _maxStringElementCount = 1 << 26;

    /// <summary>The defaults.</summary>
    public static TensorBundleReaderOptions Default { get; } = new();

    /// <summary>Largest accepted <c>.index</c> file, in bytes. Default 1 GiB (1 073 741 824); at most <see cref="Array.MaxLength"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Less than 48 or more than <see cref="Array.MaxLength"/>.</exception>
    public long MaxIndexFileBytes
    {
        get => _maxIndexFileBytes;
        init { ArgumentOutOfRangeException.ThrowIfLessThan(value, 48); ArgumentOutOfRangeException.ThrowIfGreaterThan(value, Array.MaxLength); _maxIndexFileBytes = value; }
    }

    /// <summary>Largest number of table entries (header included). Default 10 000 000.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Less than 1.</exception>
    public int MaxEntryCount
    {
        get => _maxEntryCount;
        init { ArgumentOutOfRangeException.ThrowIfLessThan(value, 1); _maxEntryCount = value; }
    }

    /// <summary>Longest key in bytes. Default 65 536.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Less than 1.</exception>
    public int MaxKeyLength
    {
        get => _maxKeyLength;
        init { ArgumentOutOfRangeException.ThrowIfLessThan(value, 1); _maxKeyLength = value; }
    }

    /// <summary>Largest tensor rank. Default 254 (TF's <c>TensorShape::MaxDimensions</c>).</summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative.</exception>
    public int MaxRank
    {
        get => _maxRank;
        init { ArgumentOutOfRangeException.ThrowIfNegative(value); _maxRank = value; }
    }

    /// <summary>Largest payload of one entry, in bytes. Default 1 TiB (2^40).</summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative.</exception>
    public long MaxTensorBytes
    {
        get => _maxTensorBytes;
        init { ArgumentOutOfRangeException.ThrowIfNegative(value); _maxTensorBytes = value; }
    }

    /// <summary>Largest serialized object graph (<c>_CHECKPOINTABLE_OBJECT_GRAPH</c>), in bytes. Default 256 MiB.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative.</exception>
    public int MaxObjectGraphBytes
    {
        get => _maxObjectGraphBytes;
        init { ArgumentOutOfRangeException.ThrowIfNegative(value); _maxObjectGraphBytes = value; }
    }

    /// <summary>Largest single DT_STRING element returned by <see cref="TensorBundleReader.ReadStrings"/>, in bytes. Default 1 GiB.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative or more than <see cref="Array.MaxLength"/>.</exception>
    public int MaxStringElementBytes
    {
        get => _maxStringElementBytes;
        init { ArgumentOutOfRangeException.ThrowIfNegative(value); ArgumentOutOfRangeException.ThrowIfGreaterThan(value, Array.MaxLength); _maxStringElementBytes = value; }
    }

    /// <summary>Largest element count of a DT_STRING/DT_VARIANT tensor that is parsed element by element. Default 67 108 864 (2^26).</summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative.</exception>
    public int MaxStringElementCount
    {
        get => _maxStringElementCount;
        init { ArgumentOutOfRangeException.ThrowIfNegative(value); _maxStringElementCount = value; }
    }

    /// <summary>Verify every tensor's masked CRC32C while reading. Default <see langword="true"/>. Table block CRCs are always verified.</summary>
    public bool VerifyChecksums { get; init; } = true;
}

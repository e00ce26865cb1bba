namespace CheckpointGpu.Format.Table;

/// <summary>Constants of TF's table format (<c>tsl/lib/io/format.h</c>, <c>table_options.h</c>; spec section 2).</summary>
internal static class TableFormat
{
    /// <summary><c>kTableMagicNumber</c>; the last 8 bytes of every <c>.index</c> are <c>57 fb 80 8b 24 75 47 db</c>.</summary>
    public const ulong Magic = 0xdb4775248b80fb57UL;

    /// <summary>Footer length: two padded handles (2 × 20 bytes) + 8-byte magic.</summary>
    public const int FooterLength = 48;

    /// <summary>Maximum encoded length of one block handle (two varint64).</summary>
    public const int MaxHandleLength = 20;

    /// <summary>Block trailer: compression type byte + masked CRC32C.</summary>
    public const int BlockTrailerLength = 5;

    /// <summary>Default <c>block_size</c>: 256 KiB of uncompressed data.</summary>
    public const int BlockSize = 262144;

    /// <summary>Restart interval of data blocks (index block uses 1).</summary>
    public const int RestartInterval = 16;

    public const byte NoCompression = 0;
    public const byte SnappyCompression = 1;
}

namespace CheckpointGpu.Format;

public sealed partial class TensorBundleReader
{
    /// <summary>
    /// Opens the bundle at <paramref name="index"/>'s prefix with an index already parsed (for example read once by one
    /// process and broadcast to others, <see cref="TensorBundlePartIndex.Parse"/>): the <c>.index</c> file is not read;
    /// data files are opened on first use as with <see cref="Open"/>.
    /// </summary>
    /// <param name="index">The parsed index and the bundle's prefix.</param>
    /// <param name="options">Limits for reads; <see cref="TensorBundleReaderOptions.Default"/> when null.</param>
    /// <returns>An open reader; dispose it to close data files.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="index"/> is null.</exception>
    public static TensorBundleReader OpenWithIndex(TensorBundlePartIndex index, TensorBundleReaderOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(index);
        return new TensorBundleReader(index.Prefix, index.Header, [.. index.Entries], options ?? TensorBundleReaderOptions.Default);
    }
}

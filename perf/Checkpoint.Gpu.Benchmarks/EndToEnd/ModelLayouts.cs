using System.Globalization;
using CheckpointGpu.Format;

namespace CheckpointGpu.Benchmarks.EndToEnd;

/// <summary>One tensor of a benchmark model: checkpoint key, dtype, shape.</summary>
public sealed record TensorSpec(string Key, DType DType, TensorShape Shape)
{
    /// <summary>Payload size in bytes.</summary>
    public long Bytes => Shape.ElementCount * DTypes.GetElementSize(DType);
}

/// <summary>
/// The tensors a benchmark saves: <c>default</c> (float32 tensors of 4 KiB … 256 MiB, ×4, repeated to N GiB),
/// <c>transformer</c> (a decoder-only transformer of about P parameters plus Adam's m and v) and <c>many-small</c>
/// (≥ 10,000 small tensors, where per-tensor costs dominate).
/// </summary>
public static class ModelLayouts
{
    /// <summary>Vocabulary of the transformer layout (LLaMA's).</summary>
    public const int Vocabulary = 32_000;

    /// <summary>Tensors of the many-small layout.</summary>
    public const int ManySmallCount = 16_384;

    /// <summary>Today's layout: float32 vectors of 4 KiB, 16 KiB, … 256 MiB, repeated until <paramref name="totalBytes"/>.</summary>
    public static TensorSpec[] Default(long totalBytes) =>
        EndToEndBenchmark.ModelSizes(totalBytes).Select((n, i) => new TensorSpec($"model/layer_{i}/kernel/.ATTRIBUTES/VARIABLE_VALUE", DType.Float, new TensorShape(n / 4))).ToArray();

    /// <summary>
    /// A decoder-only transformer (GPT/LLaMA shape) of about <paramref name="parameters"/> parameters: token embedding
    /// [V, d]; per layer query/key/value/output kernels [d, d], MLP up [d, 4d] and down [4d, d], two norms (gamma,
    /// beta [d]); a final norm and an output projection [d, V]. Width d by size (512 … 4096), depth L chosen so that
    /// <c>12·L·d² + 2·V·d ≈ P</c>. With <paramref name="moments"/>, every weight gets Adam slots <c>m</c> and <c>v</c>
    /// in float32 (as mixed-precision training keeps them), under TF's <c>.OPTIMIZER_SLOT</c> keys.
    /// </summary>
    public static TensorSpec[] Transformer(long parameters, DType dtype, bool moments)
    {
        var d = parameters switch { < 60_000_000 => 512, < 250_000_000 => 768, < 600_000_000 => 1024, < 3_000_000_000 => 2048, _ => 4096 };
        var layers = (int)Math.Max(1, Math.Round((parameters - 2.0 * Vocabulary * d) / (12.0 * d * d)));
        var weights = new List<(string Path, TensorShape Shape)> { ("model/embed_tokens/embeddings", new TensorShape(Vocabulary, d)) };
        for (var l = 0; l < layers; l++)
        {
            var p = string.Create(CultureInfo.InvariantCulture, $"model/layers/{l}");
            weights.Add(($"{p}/input_norm/gamma", new TensorShape(d)));
            weights.Add(($"{p}/input_norm/beta", new TensorShape(d)));
            foreach (var proj in new[] { "query", "key", "value", "output" }) weights.Add(($"{p}/attention/{proj}/kernel", new TensorShape(d, d)));
            weights.Add(($"{p}/post_attention_norm/gamma", new TensorShape(d)));
            weights.Add(($"{p}/post_attention_norm/beta", new TensorShape(d)));
            weights.Add(($"{p}/mlp/up/kernel", new TensorShape(d, 4 * d)));
            weights.Add(($"{p}/mlp/down/kernel", new TensorShape(4 * d, d)));
        }
        weights.Add(("model/final_norm/gamma", new TensorShape(d)));
        weights.Add(("model/final_norm/beta", new TensorShape(d)));
        weights.Add(("model/lm_head/kernel", new TensorShape(d, Vocabulary)));
        var specs = weights.Select(w => new TensorSpec($"{w.Path}/.ATTRIBUTES/VARIABLE_VALUE", dtype, w.Shape)).ToList();
        if (moments)
            foreach (var slot in new[] { "m", "v" })
                specs.AddRange(weights.Select(w => new TensorSpec($"{w.Path}/.OPTIMIZER_SLOT/optimizer/{slot}/.ATTRIBUTES/VARIABLE_VALUE", DType.Float, w.Shape)));
        return [.. specs];
    }

    /// <summary>Parameter count (elements of the weights, moments excluded) of a transformer layout.</summary>
    public static long ParameterCount(IEnumerable<TensorSpec> specs) =>
        specs.Where(s => !s.Key.Contains("/.OPTIMIZER_SLOT/", StringComparison.Ordinal)).Sum(s => s.Shape.ElementCount);

    /// <summary><see cref="ManySmallCount"/> float32 vectors of 64 … 4096 elements (256 B … 16 KiB, powers of two in turn): about 85 MB.</summary>
    public static TensorSpec[] ManySmall() =>
        Enumerable.Range(0, ManySmallCount)
            .Select(i => new TensorSpec(string.Create(CultureInfo.InvariantCulture, $"model/block_{i / 64}/unit_{i % 64}/weight/.ATTRIBUTES/VARIABLE_VALUE"),
                DType.Float, new TensorShape(64L << (i % 7))))
            .ToArray();

    /// <summary>Parses <c>1B</c>, <c>350M</c>, <c>125k</c> or a plain number.</summary>
    public static long ParseCount(string text)
    {
        var t = text.Trim().ToUpperInvariant();
        var scale = t[^1] switch { 'B' or 'G' => 1_000_000_000L, 'M' => 1_000_000L, 'K' => 1_000L, _ => 1L };
        var number = scale == 1 ? t : t[..^1];
        return (long)(double.Parse(number, CultureInfo.InvariantCulture) * scale);
    }

    /// <summary>float32, bf16 or fp16 (also f32, bfloat16, float16, half).</summary>
    public static DType ParseDType(string text) => text.ToLowerInvariant() switch
    {
        "f32" or "fp32" or "float32" or "float" => DType.Float,
        "bf16" or "bfloat16" => DType.BFloat16,
        "fp16" or "f16" or "float16" or "half" => DType.Half,
        _ => throw new ArgumentException($"--dtype {text}: expected float32, bf16 or fp16."),
    };
}

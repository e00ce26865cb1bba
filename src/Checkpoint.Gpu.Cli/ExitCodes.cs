namespace CheckpointGpu.Cli;

/// <summary>Process exit codes of the <c>ckpt</c> tool, the same for every command.</summary>
public static class ExitCodes
{
    /// <summary>Everything is fine.</summary>
    public const int Ok = 0;

    /// <summary>A data problem: corrupt file, checksum mismatch, or (for <c>diff</c>) the checkpoints differ.</summary>
    public const int DataProblem = 1;

    /// <summary>Usage error, missing file, or input we do not support (e.g. a TF V1 checkpoint).</summary>
    public const int UsageOrUnsupported = 2;
}

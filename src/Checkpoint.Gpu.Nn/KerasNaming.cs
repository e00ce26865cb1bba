namespace CheckpointGpu.Nn;

/// <summary>
/// Which Keras generation's checkpoint layout a layer or optimizer reproduces (tf-checkpoint-format.md §6.6).
/// </summary>
public enum KerasNaming
{
    /// <summary>
    /// Keras 2 (<c>tf.keras</c> up to TF 2.15, <c>tf_keras</c>): Dense edges <c>kernel</c>/<c>bias</c>, variable names
    /// <c>&lt;layer&gt;/kernel</c>; legacy <c>OptimizerV2</c> with <c>iter</c>, hyperparameter variables and slot variables.
    /// </summary>
    Keras2 = 0,

    /// <summary>
    /// Keras 3 (TF backend): Dense edges <c>_kernel</c>/<c>bias</c>; optimizers without slots (<c>_variables</c>,
    /// <c>_iterations</c>, <c>_learning_rate</c>, per-algorithm lists).
    /// </summary>
    Keras3 = 1,
}

using CheckpointGpu.Devices;
using CheckpointGpu.Format;

namespace CheckpointGpu.Nn;

/// <summary>
/// A <c>tf.Module</c>/Keras-layer-like container: named sub-modules and variables are dependency edges in the order
/// they were first tracked (attribute-assignment order in Python), which fixes checkpoint node numbering and keys.
/// </summary>
/// <remarks>
/// <para>Variables created with <see cref="AddWeight"/> take their initial value from a pending checkpoint restore when
/// one is waiting under the same edge name (restore-on-create, tf-checkpoint-format.md §7.3).</para>
/// <para>Ownership: a module owns the variables it created with <see cref="AddWeight"/> and disposes them, and disposes
/// tracked sub-modules, in <see cref="Dispose()"/>. Thread-safety: not thread-safe.</para>
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1716", Justification = "tf.Module is the established name; VB users can qualify it.")]
public class Module : AutoTrackable, IDisposable
{
    private readonly List<Variable> _owned = [];
    private readonly HashSet<Variable> _nonTrainable = new(ReferenceEqualityComparer.Instance);
    private bool _disposed;

    /// <summary>Creates a module.</summary>
    /// <param name="name">Name (Keras layer/model name, used in variable names); <see langword="null"/> means <c>module</c>.</param>
    public Module(string? name = null)
    {
        Name = name ?? "module";
    }

    /// <summary>The module's name (Keras layer name such as <c>dense_1</c>).</summary>
    public string Name { get; protected set; }

    /// <summary>True after <see cref="Dispose()"/>.</summary>
    public bool IsDisposed => _disposed;

    /// <summary>
    /// Every variable reachable through this module's edges, depth-first in tracking order, each once (optimizers
    /// excluded).
    /// </summary>
    public IReadOnlyList<Variable> Variables => Collect(trainableOnly: false);

    /// <summary>The trainable subset of <see cref="Variables"/>, in the same order (Keras <c>trainable_variables</c>).</summary>
    public IReadOnlyList<Variable> TrainableVariables => Collect(trainableOnly: true);

    /// <summary>Direct sub-modules in tracking order.</summary>
    public IReadOnlyList<Module> Submodules => GetChildren().Select(c => c.Target).OfType<Module>().Distinct().ToArray();

    /// <summary>
    /// Creates a variable tracked as <paramref name="edgeName"/> (Keras <c>add_weight</c>), restored on creation when a
    /// checkpoint value is pending for that edge.
    /// </summary>
    /// <param name="edgeName">Dependency name (for example <c>kernel</c> or <c>_kernel</c>).</param>
    /// <param name="accelerator">Accelerator holding the value.</param>
    /// <param name="dtype">Element type.</param>
    /// <param name="shape">Shape, outermost first.</param>
    /// <param name="initializer">Initial value when nothing is restored; <see langword="null"/> means zeros.</param>
    /// <param name="fullName">TF variable name (checkpoint <c>full_name</c>); defaults to <c>&lt;Name&gt;/&lt;edgeName&gt;</c>.</param>
    /// <param name="trainable">Whether <see cref="TrainableVariables"/> lists it.</param>
    /// <returns>The variable, owned by this module.</returns>
    /// <exception cref="ArgumentException">Another object is tracked under <paramref name="edgeName"/>, or the dtype is not fixed-size.</exception>
    /// <exception cref="CheckpointMismatchException">The pending checkpoint value has another dtype or shape.</exception>
    /// <exception cref="ObjectDisposedException">The module is disposed.</exception>
    protected Variable AddWeight(string edgeName, Accelerator accelerator, DType dtype, TensorShape shape,
        VariableInitializer? initializer = null, string? fullName = null, bool trainable = true)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var variable = Variable.Create(this, edgeName, accelerator, dtype, shape, initializer, fullName ?? $"{Name}/{edgeName}");
        _owned.Add(variable);
        if (!trainable) _nonTrainable.Add(variable);
        return variable;
    }

    private Variable[] Collect(bool trainableOnly)
    {
        var result = new List<Variable>();
        var seen = new HashSet<Trackable>(ReferenceEqualityComparer.Instance);
        Visit(this, result, seen, trainableOnly);
        return [.. result];

        static void Visit(Trackable node, List<Variable> result, HashSet<Trackable> seen, bool trainableOnly)
        {
            if (!seen.Add(node)) return;
            foreach (var edge in node.GetChildren())
            {
                switch (edge.Target)
                {
                    case Variable v:
                        if (seen.Add(v) && (!trainableOnly || !IsNonTrainable(node, v))) result.Add(v);
                        break;
                    case OptimizerBase:
                        break;   // a compiled model tracks its optimizer; its state is not the model's
                    default:
                        Visit(edge.Target, result, seen, trainableOnly);
                        break;
                }
            }
        }

        static bool IsNonTrainable(Trackable owner, Variable v) => owner is Module m && m._nonTrainable.Contains(v);
    }

    /// <summary>Disposes owned variables and tracked sub-modules.</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Disposes owned variables and tracked sub-modules; subclasses release their own resources too.</summary>
    /// <param name="disposing">True when called from <see cref="Dispose()"/>.</param>
    protected virtual void Dispose(bool disposing)
    {
        if (_disposed) return;
        _disposed = true;
        if (!disposing) return;
        foreach (var module in Submodules) module.Dispose();
        foreach (var v in _owned) v.Dispose();
        _owned.Clear();
    }

    /// <inheritdoc/>
    public override string ToString() => $"{GetType().Name} '{Name}'";
}

using System.Runtime.CompilerServices;
using CheckpointGpu.Devices;
using CheckpointGpu.Devices.OpenCL;

namespace CheckpointGpu.Nn;

/// <summary>
/// Device kernels of one training step (float32, row-major; ids and labels int32): matrix products, bias add and its
/// gradient, activations and their gradients, embedding lookup and its gradient, mean squared error, softmax
/// cross-entropy, and the SGD/Adam updates. One instance per
/// <see cref="Accelerator"/> (<see cref="For"/>); every operation runs in order on the accelerator's
/// <see cref="Accelerator.DefaultStream"/>, the stream <see cref="Variable"/> uses for its host transfers, so
/// kernels, variable assignments and reads stay ordered.
/// </summary>
/// <remarks>
/// <para><b>Determinism.</b> Every output element is computed by one work item; every sum (matrix products, bias
/// gradient, losses, the embedding gradient's scatter-add) runs sequentially in ascending index order; there are no atomics. Results are therefore
/// bit-identical from run to run on a given backend and device. CPU and OpenCL results may differ in the last
/// bits (OpenCL <c>sqrt</c>/<c>tanh</c>/<c>exp</c>/<c>log</c>/division precision).</para>
/// <para><b>Backends.</b> OpenCL: kernels of <c>native/opencl/nn.cl</c>, enqueued asynchronously. CPU: C# loops
/// over the buffers' native memory, run on the calling thread after the default stream drained (so they are
/// synchronous; the stream is idle again when the method returns).</para>
/// <para>Buffers must belong to this accelerator and hold at least the elements the arguments describe
/// (<see cref="ArgumentException"/> otherwise). Thread-safety: calls may come from several threads, but ordering
/// between threads is the caller's business; training loops use one thread.</para>
/// </remarks>
public abstract class NnKernels
{
    private static readonly ConditionalWeakTable<Accelerator, NnKernels> s_cache = [];

    private protected NnKernels(Accelerator accelerator)
    {
        Accelerator = accelerator;
    }

    /// <summary>The accelerator whose buffers these kernels work on.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>Whether <see cref="For(Accelerator)"/> has kernels for accelerators of <paramref name="kind"/>.</summary>
    /// <param name="kind">The backend.</param>
    /// <returns>True for every kind: native CPU and OpenCL kernels, and one ILGPU kernel source for the ILGPU kinds.</returns>
    public static bool IsSupported(AcceleratorKind kind) =>
        kind is AcceleratorKind.Cpu or AcceleratorKind.OpenCL or AcceleratorKind.IlgpuCpu or AcceleratorKind.Cuda or AcceleratorKind.IlgpuOpenCL;

    /// <summary>Returns the (cached) kernels for <paramref name="accelerator"/>.</summary>
    /// <param name="accelerator">A CPU or OpenCL accelerator.</param>
    /// <returns>The kernels.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> is null.</exception>
    /// <exception cref="NotSupportedException">The accelerator is of a type without Nn kernels.</exception>
    /// <exception cref="ObjectDisposedException">The accelerator is disposed.</exception>
    public static NnKernels For(Accelerator accelerator)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        ObjectDisposedException.ThrowIf(accelerator.IsDisposed, accelerator);
        return s_cache.GetValue(accelerator, static a => a switch
        {
            OpenCLAccelerator cl => new OpenCLNnKernels(cl),
            Devices.Ilgpu.IlgpuAccelerator ilgpu => new IlgpuNnKernels(ilgpu),
            _ when a.Kind == AcceleratorKind.Cpu => new CpuNnKernels(a),
            _ => throw new NotSupportedException($"No Nn kernels for {a.Kind} accelerators."),
        });
    }

    /// <summary>
    /// Matrix product <c>C[m, n] = op(A)[m, k] · op(B)[k, n]</c>, each element summed over <c>p = 0 … k-1</c> in order.
    /// </summary>
    /// <param name="transposeA">False: <paramref name="a"/> is row-major [m, k]; true: it is [k, m] and used transposed.</param>
    /// <param name="transposeB">False: <paramref name="b"/> is row-major [k, n]; true: it is [n, k] and used transposed.</param>
    /// <param name="m">Rows of the result.</param>
    /// <param name="n">Columns of the result.</param>
    /// <param name="k">Inner dimension.</param>
    /// <param name="a">float32 buffer of at least m·k elements.</param>
    /// <param name="b">float32 buffer of at least k·n elements.</param>
    /// <param name="c">float32 buffer of at least m·n elements, overwritten; must not alias <paramref name="a"/> or <paramref name="b"/>.</param>
    /// <exception cref="ArgumentException">A buffer is too small, aliases, or belongs to another accelerator.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A dimension is negative.</exception>
    public void MatMul(bool transposeA, bool transposeB, int m, int n, int k, DeviceBuffer a, DeviceBuffer b, DeviceBuffer c)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        Check(a, (long)m * k, nameof(a));
        Check(b, (long)k * n, nameof(b));
        Check(c, (long)m * n, nameof(c));
        if (ReferenceEquals(c, a) || ReferenceEquals(c, b)) throw new ArgumentException("The result buffer must not alias an operand.", nameof(c));
        if (m == 0 || n == 0) return;
        MatMulCore(transposeA, transposeB, m, n, k, a, b, c);
    }

    /// <summary>Adds <paramref name="bias"/>[c] to every row of the row-major [rows, cols] matrix <paramref name="x"/>, in place.</summary>
    /// <param name="rows">Rows (batch size).</param>
    /// <param name="cols">Columns (units).</param>
    /// <param name="x">float32 [rows, cols], updated in place.</param>
    /// <param name="bias">float32 [cols].</param>
    /// <exception cref="ArgumentException">A buffer is too small or belongs to another accelerator.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A dimension is negative.</exception>
    public void BiasAdd(int rows, int cols, DeviceBuffer x, DeviceBuffer bias)
    {
        CheckDims(rows, cols);
        Check(x, (long)rows * cols, nameof(x));
        Check(bias, cols, nameof(bias));
        if (rows == 0 || cols == 0) return;
        BiasAddCore(rows, cols, x, bias);
    }

    /// <summary>Bias gradient: <c>db[c] = Σ_r dy[r, c]</c>, summed over rows in ascending order.</summary>
    /// <param name="rows">Rows (batch size).</param>
    /// <param name="cols">Columns (units).</param>
    /// <param name="dy">float32 [rows, cols].</param>
    /// <param name="db">float32 [cols], overwritten.</param>
    /// <exception cref="ArgumentException">A buffer is too small or belongs to another accelerator.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A dimension is negative.</exception>
    public void BiasGrad(int rows, int cols, DeviceBuffer dy, DeviceBuffer db)
    {
        CheckDims(rows, cols);
        Check(dy, (long)rows * cols, nameof(dy));
        Check(db, cols, nameof(db));
        if (cols == 0) return;
        BiasGradCore(rows, cols, dy, db);
    }

    /// <summary>Applies <paramref name="activation"/> in place (<see cref="Activation.Linear"/> does nothing).</summary>
    /// <param name="activation">The activation.</param>
    /// <param name="count">Element count.</param>
    /// <param name="x">float32 buffer of at least <paramref name="count"/> elements.</param>
    /// <exception cref="ArgumentException">The buffer is too small or belongs to another accelerator.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is negative or the activation unknown.</exception>
    public void Activate(Activation activation, int count, DeviceBuffer x)
    {
        CheckActivation(activation);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        Check(x, count, nameof(x));
        if (activation == Activation.Linear || count == 0) return;
        ActivateCore(activation, count, x);
    }

    /// <summary>
    /// Back-propagates through the activation in place: <c>dy[i] *= f'(z[i])</c>, with the derivative expressed
    /// through the activation's output <c>y</c> (relu: <c>y &gt; 0</c>; tanh: <c>1 − y²</c>; linear: 1).
    /// </summary>
    /// <param name="activation">The activation.</param>
    /// <param name="count">Element count.</param>
    /// <param name="y">float32 activation outputs.</param>
    /// <param name="dy">float32 gradients with respect to the outputs; become gradients with respect to the pre-activations.</param>
    /// <exception cref="ArgumentException">A buffer is too small or belongs to another accelerator.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is negative or the activation unknown.</exception>
    public void ActivationGrad(Activation activation, int count, DeviceBuffer y, DeviceBuffer dy)
    {
        CheckActivation(activation);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        Check(y, count, nameof(y));
        Check(dy, count, nameof(dy));
        if (activation == Activation.Linear || count == 0) return;
        ActivationGradCore(activation, count, y, dy);
    }

    /// <summary>
    /// Mean squared error over all <paramref name="count"/> elements and its gradient:
    /// <c>loss[0] = Σ (p − t)² / count</c> (ascending order), <c>grad[i] = 2 (p[i] − t[i]) / count</c>.
    /// </summary>
    /// <param name="count">Element count (batch × outputs), at least 1.</param>
    /// <param name="prediction">float32 predictions.</param>
    /// <param name="target">float32 targets.</param>
    /// <param name="grad">float32, overwritten with the gradient with respect to the predictions.</param>
    /// <param name="loss">float32 buffer of at least one element; element 0 receives the loss.</param>
    /// <exception cref="ArgumentException">A buffer is too small or belongs to another accelerator.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is less than 1.</exception>
    public void MeanSquaredError(int count, DeviceBuffer prediction, DeviceBuffer target, DeviceBuffer grad, DeviceBuffer loss)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        Check(prediction, count, nameof(prediction));
        Check(target, count, nameof(target));
        Check(grad, count, nameof(grad));
        Check(loss, 1, nameof(loss));
        MeanSquaredErrorCore(count, prediction, target, grad, loss);
    }

    /// <summary>
    /// Embedding lookup (TF <c>ResourceGather</c> on axis 0, Keras <c>Embedding</c>):
    /// <c>output[i, d] = table[ids[i], d]</c> for <c>i</c> in [0, <paramref name="count"/>), <c>d</c> in [0, <paramref name="dimension"/>).
    /// A batch of contexts stored row-major as ids [batch, context] yields output [batch, context · dimension], the
    /// concatenated embeddings a following <see cref="Dense"/> layer takes as input. Pure copies: exact on every backend.
    /// </summary>
    /// <param name="count">Number of ids (rows of the output).</param>
    /// <param name="dimension">Embedding size (columns of the table and of the output).</param>
    /// <param name="vocabulary">Rows of the table.</param>
    /// <param name="ids">int32 buffer of at least <paramref name="count"/> elements. An id outside [0, vocabulary) yields a row
    /// of zeros (TF's GPU behaviour; a device kernel cannot throw) and contributes nothing to <see cref="EmbeddingGrad"/>.</param>
    /// <param name="table">float32 [vocabulary, dimension].</param>
    /// <param name="output">float32 [count, dimension], overwritten.</param>
    /// <exception cref="ArgumentException">A buffer is too small or belongs to another accelerator.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A size is negative.</exception>
    public void EmbeddingLookup(int count, int dimension, int vocabulary, DeviceBuffer ids, DeviceBuffer table, DeviceBuffer output)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfNegative(dimension);
        ArgumentOutOfRangeException.ThrowIfNegative(vocabulary);
        Check(ids, count, nameof(ids));
        Check(table, (long)vocabulary * dimension, nameof(table));
        Check(output, (long)count * dimension, nameof(output));
        if (count == 0 || dimension == 0) return;
        EmbeddingLookupCore(count, dimension, vocabulary, ids, table, output);
    }

    /// <summary>
    /// Gradient of <see cref="EmbeddingLookup"/> (the scatter-add of TF's <c>IndexedSlices</c> densified):
    /// <c>tableGrad[v, d] = Σ outputGrad[i, d]</c> over the <c>i</c> with <c>ids[i] = v</c>, added in ascending <c>i</c>
    /// starting from 0 (rows no id refers to are 0). Deterministic: no atomics; each table element is owned by one work
    /// item (GPU backends; cost vocabulary × dimension × count comparisons) or the ids are walked once in order (CPU),
    /// which adds the same terms in the same order, so every backend sums identically.
    /// </summary>
    /// <param name="count">Number of ids.</param>
    /// <param name="dimension">Embedding size.</param>
    /// <param name="vocabulary">Rows of the table gradient.</param>
    /// <param name="ids">int32 [count]; ids outside [0, vocabulary) are skipped.</param>
    /// <param name="outputGrad">float32 [count, dimension]: ∂L/∂output of the lookup.</param>
    /// <param name="tableGrad">float32 [vocabulary, dimension], overwritten; must not alias <paramref name="outputGrad"/>.</param>
    /// <exception cref="ArgumentException">A buffer is too small, aliases, or belongs to another accelerator.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A size is negative.</exception>
    public void EmbeddingGrad(int count, int dimension, int vocabulary, DeviceBuffer ids, DeviceBuffer outputGrad, DeviceBuffer tableGrad)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfNegative(dimension);
        ArgumentOutOfRangeException.ThrowIfNegative(vocabulary);
        Check(ids, count, nameof(ids));
        Check(outputGrad, (long)count * dimension, nameof(outputGrad));
        Check(tableGrad, (long)vocabulary * dimension, nameof(tableGrad));
        if (ReferenceEquals(tableGrad, outputGrad) || ReferenceEquals(tableGrad, ids))
            throw new ArgumentException("The table gradient must not alias an input.", nameof(tableGrad));
        if (vocabulary == 0 || dimension == 0) return;
        EmbeddingGradCore(count, dimension, vocabulary, ids, outputGrad, tableGrad);
    }

    /// <summary>
    /// Softmax cross-entropy with integer labels (TF <c>SparseSoftmaxCrossEntropyWithLogits</c>, averaged over the batch
    /// as Keras' <c>SparseCategoricalCrossentropy(from_logits=True)</c>). Per row <c>r</c>: <c>m = max_j z[r, j]</c>,
    /// <c>s = Σ_j exp(z[r, j] − m)</c> (ascending j), <c>grad[r, j] = (exp(z[r, j] − m) / s − [j = label_r]) / rows</c>;
    /// <c>loss[0] = Σ_r (log s + m − z[r, label_r]) / rows</c>, summed over rows in ascending order by one work item.
    /// </summary>
    /// <param name="rows">Batch size, at least 1.</param>
    /// <param name="classes">Classes per row (logits per row), at least 1.</param>
    /// <param name="logits">float32 [rows, classes].</param>
    /// <param name="labels">int32 [rows]. A label outside [0, classes) makes that row's gradient and the loss NaN (TF's GPU behaviour).</param>
    /// <param name="grad">float32 [rows, classes], overwritten with ∂loss/∂logits; must not alias <paramref name="logits"/>.</param>
    /// <param name="loss">float32 buffer of at least one element; element 0 receives the mean loss in nats.</param>
    /// <exception cref="ArgumentException">A buffer is too small, aliases, or belongs to another accelerator.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="rows"/> or <paramref name="classes"/> is less than 1.</exception>
    public void SoftmaxCrossEntropy(int rows, int classes, DeviceBuffer logits, DeviceBuffer labels, DeviceBuffer grad, DeviceBuffer loss)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(classes, 1);
        Check(logits, (long)rows * classes, nameof(logits));
        Check(labels, rows, nameof(labels));
        Check(grad, (long)rows * classes, nameof(grad));
        Check(loss, 1, nameof(loss));
        if (ReferenceEquals(grad, logits)) throw new ArgumentException("The gradient buffer must not alias the logits.", nameof(grad));
        SoftmaxCrossEntropyCore(rows, classes, logits, labels, grad, loss);
    }

    /// <summary>
    /// SGD step. Without <paramref name="accumulator"/>: <c>var −= grad · lr</c> (TF <c>ResourceApplyGradientDescent</c>).
    /// With it: <c>accum = accum · momentum − grad · lr; var += accum</c> (TF <c>ResourceApplyKerasMomentum</c>, Keras 3 SGD).
    /// </summary>
    /// <param name="count">Element count.</param>
    /// <param name="variable">float32 values, updated in place.</param>
    /// <param name="grad">float32 gradient.</param>
    /// <param name="accumulator">float32 momentum slot, updated in place; <see langword="null"/> for plain SGD.</param>
    /// <param name="learningRate">Learning rate.</param>
    /// <param name="momentum">Momentum (ignored without an accumulator).</param>
    /// <exception cref="ArgumentException">A buffer is too small or belongs to another accelerator.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is negative.</exception>
    public void SgdUpdate(int count, DeviceBuffer variable, DeviceBuffer grad, DeviceBuffer? accumulator, float learningRate, float momentum)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        Check(variable, count, nameof(variable));
        Check(grad, count, nameof(grad));
        if (accumulator is not null) Check(accumulator, count, nameof(accumulator));
        if (count == 0) return;
        SgdUpdateCore(count, variable, grad, accumulator, learningRate, momentum);
    }

    /// <summary>
    /// Adam step (TF <c>ResourceApplyAdam</c>, Keras 3 <c>Adam.update_step</c>):
    /// <c>m += (g − m)(1 − β1); v += (g² − v)(1 − β2); var −= (m · alpha) / (√v + ε)</c>, where the caller computes
    /// <c>alpha = lr · √(1 − β2^t) / (1 − β1^t)</c>.
    /// </summary>
    /// <param name="count">Element count.</param>
    /// <param name="variable">float32 values, updated in place.</param>
    /// <param name="m">float32 first moment, updated in place.</param>
    /// <param name="v">float32 second moment, updated in place.</param>
    /// <param name="grad">float32 gradient.</param>
    /// <param name="alpha">Bias-corrected step size.</param>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    /// <param name="epsilon">ε.</param>
    /// <exception cref="ArgumentException">A buffer is too small or belongs to another accelerator.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is negative.</exception>
    public void AdamUpdate(int count, DeviceBuffer variable, DeviceBuffer m, DeviceBuffer v, DeviceBuffer grad,
        float alpha, float beta1, float beta2, float epsilon)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        Check(variable, count, nameof(variable));
        Check(m, count, nameof(m));
        Check(v, count, nameof(v));
        Check(grad, count, nameof(grad));
        if (count == 0) return;
        AdamUpdateCore(count, variable, m, v, grad, alpha, beta1, beta2, epsilon);
    }

    private protected abstract void MatMulCore(bool transposeA, bool transposeB, int m, int n, int k, DeviceBuffer a, DeviceBuffer b, DeviceBuffer c);

    private protected abstract void BiasAddCore(int rows, int cols, DeviceBuffer x, DeviceBuffer bias);

    private protected abstract void BiasGradCore(int rows, int cols, DeviceBuffer dy, DeviceBuffer db);

    private protected abstract void ActivateCore(Activation activation, int count, DeviceBuffer x);

    private protected abstract void ActivationGradCore(Activation activation, int count, DeviceBuffer y, DeviceBuffer dy);

    private protected abstract void MeanSquaredErrorCore(int count, DeviceBuffer prediction, DeviceBuffer target, DeviceBuffer grad, DeviceBuffer loss);

    private protected abstract void EmbeddingLookupCore(int count, int dimension, int vocabulary, DeviceBuffer ids, DeviceBuffer table, DeviceBuffer output);

    private protected abstract void EmbeddingGradCore(int count, int dimension, int vocabulary, DeviceBuffer ids, DeviceBuffer outputGrad, DeviceBuffer tableGrad);

    private protected abstract void SoftmaxCrossEntropyCore(int rows, int classes, DeviceBuffer logits, DeviceBuffer labels, DeviceBuffer grad, DeviceBuffer loss);

    private protected abstract void SgdUpdateCore(int count, DeviceBuffer variable, DeviceBuffer grad, DeviceBuffer? accumulator, float learningRate, float momentum);

    private protected abstract void AdamUpdateCore(int count, DeviceBuffer variable, DeviceBuffer m, DeviceBuffer v, DeviceBuffer grad,
        float alpha, float beta1, float beta2, float epsilon);

    private void Check(DeviceBuffer buffer, long elementCount, string paramName)
    {
        ArgumentNullException.ThrowIfNull(buffer, paramName);
        ObjectDisposedException.ThrowIf(buffer.IsDisposed, buffer);
        if (!ReferenceEquals(buffer.Accelerator, Accelerator))
            throw new ArgumentException($"The buffer belongs to another accelerator ({buffer.Accelerator}), not {Accelerator}.", paramName);
        if (buffer.LengthInBytes < elementCount * sizeof(float))
            throw new ArgumentException($"The buffer holds {buffer.LengthInBytes} bytes; {elementCount} 4-byte elements need {elementCount * sizeof(float)}.", paramName);
    }

    private static void CheckDims(int rows, int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
    }

    private static void CheckActivation(Activation activation)
    {
        if (activation is not (Activation.Linear or Activation.Relu or Activation.Tanh))
            throw new ArgumentOutOfRangeException(nameof(activation), activation, "Unknown activation.");
    }
}

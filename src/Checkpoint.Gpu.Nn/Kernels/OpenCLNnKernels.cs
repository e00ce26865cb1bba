using CheckpointGpu.Devices;
using CheckpointGpu.Devices.OpenCL;

namespace CheckpointGpu.Nn;

/// <summary>
/// OpenCL backend of <see cref="NnKernels"/>: the kernels of <c>native/opencl/nn.cl</c> (embedded in the Devices
/// assembly as program <c>nn</c>), enqueued on the default stream through the Devices kernel-launch seam.
/// </summary>
internal sealed class OpenCLNnKernels(OpenCLAccelerator accelerator) : NnKernels(accelerator)
{
    private const string Program = "nn";
    private readonly OpenCLAccelerator _cl = accelerator;

    private void Launch(string kernelName, KernelRange range, params ReadOnlySpan<KernelArgument> arguments) =>
        _cl.EnqueueKernel(_cl.DefaultStream, _cl.GetKernel(Program, kernelName), range, arguments);

    private static KernelArgument B(DeviceBuffer buffer) => KernelArgument.FromBuffer(buffer);

    private static KernelArgument I(int value) => KernelArgument.FromInt32(value);

    private static KernelArgument F(float value) => KernelArgument.FromSingle(value);

    private protected override void MatMulCore(bool transposeA, bool transposeB, int m, int n, int k, DeviceBuffer a, DeviceBuffer b, DeviceBuffer c) =>
        Launch("gemm_f32", new KernelRange(n, m), B(a), B(b), B(c), I(m), I(n), I(k), I(transposeA ? 1 : 0), I(transposeB ? 1 : 0));

    private protected override void BiasAddCore(int rows, int cols, DeviceBuffer x, DeviceBuffer bias) =>
        Launch("bias_add_f32", new KernelRange((long)rows * cols), B(x), B(bias), I(rows), I(cols));

    private protected override void BiasGradCore(int rows, int cols, DeviceBuffer dy, DeviceBuffer db) =>
        Launch("bias_grad_f32", new KernelRange(cols), B(dy), B(db), I(rows), I(cols));

    private protected override void ActivateCore(Activation activation, int count, DeviceBuffer x) =>
        Launch("activate_f32", new KernelRange(count), B(x), I(count), I((int)activation));

    private protected override void ActivationGradCore(Activation activation, int count, DeviceBuffer y, DeviceBuffer dy) =>
        Launch("activation_grad_f32", new KernelRange(count), B(y), B(dy), I(count), I((int)activation));

    private protected override void MeanSquaredErrorCore(int count, DeviceBuffer prediction, DeviceBuffer target, DeviceBuffer grad, DeviceBuffer loss)
    {
        Launch("mse_grad_f32", new KernelRange(count), B(prediction), B(target), B(grad), I(count));
        Launch("mse_loss_f32", new KernelRange(1), B(prediction), B(target), B(loss), I(count));
    }

    private protected override void EmbeddingLookupCore(int count, int dimension, int vocabulary, DeviceBuffer ids, DeviceBuffer table, DeviceBuffer output) =>
        Launch("embedding_lookup_f32", new KernelRange((long)count * dimension), B(ids), B(table), B(output), I(count), I(dimension), I(vocabulary));

    private protected override void EmbeddingGradCore(int count, int dimension, int vocabulary, DeviceBuffer ids, DeviceBuffer outputGrad, DeviceBuffer tableGrad) =>
        Launch("embedding_grad_f32", new KernelRange((long)vocabulary * dimension), B(ids), B(outputGrad), B(tableGrad), I(count), I(dimension), I(vocabulary));

    private protected override void SoftmaxCrossEntropyCore(int rows, int classes, DeviceBuffer logits, DeviceBuffer labels, DeviceBuffer grad, DeviceBuffer loss)
    {
        Launch("softmax_xent_grad_f32", new KernelRange(rows), B(logits), B(labels), B(grad), I(rows), I(classes));
        Launch("softmax_xent_loss_f32", new KernelRange(1), B(logits), B(labels), B(loss), I(rows), I(classes));
    }

    private protected override void SgdUpdateCore(int count, DeviceBuffer variable, DeviceBuffer grad, DeviceBuffer? accumulator, float learningRate, float momentum)
    {
        if (accumulator is null)
            Launch("sgd_f32", new KernelRange(count), B(variable), B(grad), I(count), F(learningRate));
        else
            Launch("sgd_momentum_f32", new KernelRange(count), B(variable), B(accumulator), B(grad), I(count), F(learningRate), F(momentum));
    }

    private protected override void AdamUpdateCore(int count, DeviceBuffer variable, DeviceBuffer m, DeviceBuffer v, DeviceBuffer grad,
        float alpha, float beta1, float beta2, float epsilon) =>
        Launch("adam_f32", new KernelRange(count), B(variable), B(m), B(v), B(grad), I(count), F(alpha), F(beta1), F(beta2), F(epsilon));
}

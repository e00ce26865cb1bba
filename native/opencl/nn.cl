// Training-step kernels for Checkpoint.Gpu.Nn (OpenCL C 1.2; runs on PoCL and GPU drivers).
// Launched through OpenCLAccelerator.GetKernel("nn", …) + EnqueueKernel by CheckpointGpu.Nn.NnKernels.
//
// Conventions: float32, row-major matrices, counts and dimensions in elements. Every output element is
// written by exactly one work item, and every reduction runs sequentially in ascending index order inside
// one work item: no atomics, no work-group reductions, so results are bit-identical run to run on a device.
// Global sizes may exceed the logical size; work items outside it return at once.
//
// FP_CONTRACT OFF keeps a*b+c as two rounded operations (no fused multiply-add), which keeps the results
// close to the C# CPU kernels (RyuJIT never contracts on its own). sqrt and division follow the device's
// OpenCL precision rules (not necessarily correctly rounded), so CPU and OpenCL results may differ in the
// last bits; each backend is deterministic on its own.
#pragma OPENCL FP_CONTRACT OFF

// C[m, n] = op(A)[m, k] · op(B)[k, n]; op(A) = A ([m, k]) or Aᵀ (A stored [k, m]); op(B) = B ([k, n]) or Bᵀ (B stored [n, k]).
// Global range: x = column (n), y = row (m).
__kernel void gemm_f32(__global const float* a, __global const float* b, __global float* c,
                       int m, int n, int k, int trans_a, int trans_b)
{
    int column = (int)get_global_id(0);
    int row = (int)get_global_id(1);
    if (row >= m || column >= n) return;
    float sum = 0.0f;
    for (int p = 0; p < k; p++)
    {
        float av = trans_a ? a[p * m + row] : a[row * k + p];
        float bv = trans_b ? b[column * k + p] : b[p * n + column];
        sum = sum + av * bv;
    }
    c[row * n + column] = sum;
}

// x[r, c] += bias[c] for a row-major [rows, cols] matrix. Global range: rows * cols.
__kernel void bias_add_f32(__global float* x, __global const float* bias, int rows, int cols)
{
    int i = (int)get_global_id(0);
    if (i >= rows * cols) return;
    x[i] = x[i] + bias[i % cols];
}

// db[c] = sum over r (ascending) of dy[r, c]. Global range: cols.
__kernel void bias_grad_f32(__global const float* dy, __global float* db, int rows, int cols)
{
    int column = (int)get_global_id(0);
    if (column >= cols) return;
    float sum = 0.0f;
    for (int r = 0; r < rows; r++) sum = sum + dy[r * cols + column];
    db[column] = sum;
}

// In place: kind 1 = relu, 2 = tanh (0 = linear is never launched).
__kernel void activate_f32(__global float* x, int count, int kind)
{
    int i = (int)get_global_id(0);
    if (i >= count) return;
    float v = x[i];
    x[i] = kind == 1 ? (v > 0.0f ? v : 0.0f) : tanh(v);
}

// dy *= f'(z), expressed through the activation output y: relu' = (y > 0), tanh' = 1 - y².
__kernel void activation_grad_f32(__global const float* y, __global float* dy, int count, int kind)
{
    int i = (int)get_global_id(0);
    if (i >= count) return;
    float v = y[i];
    dy[i] = kind == 1 ? (v > 0.0f ? dy[i] : 0.0f) : dy[i] * (1.0f - v * v);
}

// grad[i] = 2 (prediction[i] - target[i]) / count.
__kernel void mse_grad_f32(__global const float* prediction, __global const float* target, __global float* grad, int count)
{
    int i = (int)get_global_id(0);
    if (i >= count) return;
    float d = prediction[i] - target[i];
    grad[i] = (2.0f * d) / (float)count;
}

// loss[0] = mean of squared differences, summed in ascending order by a single work item.
__kernel void mse_loss_f32(__global const float* prediction, __global const float* target, __global float* loss, int count)
{
    if (get_global_id(0) != 0) return;
    float sum = 0.0f;
    for (int i = 0; i < count; i++)
    {
        float d = prediction[i] - target[i];
        sum = sum + d * d;
    }
    loss[0] = sum / (float)count;
}

// Embedding lookup: output[i, d] = table[ids[i], d]; an id outside [0, vocabulary) gives a row of zeros.
// Global range: count * dimension (element e = i * dimension + d).
__kernel void embedding_lookup_f32(__global const int* ids, __global const float* table, __global float* output,
                                   int count, int dimension, int vocabulary)
{
    int e = (int)get_global_id(0);
    if (e >= count * dimension) return;
    int i = e / dimension;
    int d = e - i * dimension;
    int id = ids[i];
    output[e] = (id >= 0 && id < vocabulary) ? table[id * dimension + d] : 0.0f;
}

// Embedding gradient (deterministic scatter-add): table_grad[v, d] = sum over i ascending with ids[i] == v of
// output_grad[i, d], starting from 0. One work item per table element; no atomics.
// Global range: vocabulary * dimension (element e = v * dimension + d).
__kernel void embedding_grad_f32(__global const int* ids, __global const float* output_grad, __global float* table_grad,
                                 int count, int dimension, int vocabulary)
{
    int e = (int)get_global_id(0);
    if (e >= vocabulary * dimension) return;
    int v = e / dimension;
    int d = e - v * dimension;
    float sum = 0.0f;
    for (int i = 0; i < count; i++)
        if (ids[i] == v) sum = sum + output_grad[i * dimension + d];
    table_grad[e] = sum;
}

// Softmax cross-entropy gradient, one work item per row: m = max_j z, s = sum_j exp(z_j - m) (ascending),
// grad[r, j] = (exp(z_j - m) / s - [j == label]) / rows; NaN for a label outside [0, classes). Global range: rows.
__kernel void softmax_xent_grad_f32(__global const float* logits, __global const int* labels, __global float* grad,
                                    int rows, int classes)
{
    int r = (int)get_global_id(0);
    if (r >= rows) return;
    __global const float* z = logits + r * classes;
    __global float* g = grad + r * classes;
    int label = labels[r];
    float m = z[0];
    for (int j = 1; j < classes; j++) m = z[j] > m ? z[j] : m;
    float s = 0.0f;
    for (int j = 0; j < classes; j++) s = s + exp(z[j] - m);
    int valid = label >= 0 && label < classes;
    for (int j = 0; j < classes; j++)
        g[j] = valid ? (exp(z[j] - m) / s - (j == label ? 1.0f : 0.0f)) / (float)rows : NAN;
}

// Softmax cross-entropy loss: loss[0] = sum over rows (ascending) of (log s + m - z[label]), divided by rows;
// a single work item recomputes each row's m and s in the gradient kernel's order.
__kernel void softmax_xent_loss_f32(__global const float* logits, __global const int* labels, __global float* loss,
                                    int rows, int classes)
{
    if (get_global_id(0) != 0) return;
    float total = 0.0f;
    for (int r = 0; r < rows; r++)
    {
        __global const float* z = logits + r * classes;
        int label = labels[r];
        float m = z[0];
        for (int j = 1; j < classes; j++) m = z[j] > m ? z[j] : m;
        float s = 0.0f;
        for (int j = 0; j < classes; j++) s = s + exp(z[j] - m);
        total = total + ((label >= 0 && label < classes) ? log(s) + m - z[label] : NAN);
    }
    loss[0] = total / (float)rows;
}

// Plain gradient descent (TF ResourceApplyGradientDescent): var -= grad * lr.
__kernel void sgd_f32(__global float* var, __global const float* grad, int count, float lr)
{
    int i = (int)get_global_id(0);
    if (i >= count) return;
    var[i] = var[i] - grad[i] * lr;
}

// Momentum (TF ResourceApplyKerasMomentum, non-Nesterov; Keras 3 SGD): accum = accum * momentum - grad * lr; var += accum.
__kernel void sgd_momentum_f32(__global float* var, __global float* accum, __global const float* grad, int count, float lr, float momentum)
{
    int i = (int)get_global_id(0);
    if (i >= count) return;
    float a = accum[i] * momentum - grad[i] * lr;
    accum[i] = a;
    var[i] = var[i] + a;
}

// Adam (TF ResourceApplyAdam / Keras 3 Adam), alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t) computed on the host:
// m += (g - m) (1 - beta1); v += (g² - v) (1 - beta2); var -= (m alpha) / (sqrt(v) + epsilon).
__kernel void adam_f32(__global float* var, __global float* m, __global float* v, __global const float* grad, int count,
                       float alpha, float beta1, float beta2, float epsilon)
{
    int i = (int)get_global_id(0);
    if (i >= count) return;
    float g = grad[i];
    float mi = m[i] + (g - m[i]) * (1.0f - beta1);
    float vi = v[i] + (g * g - v[i]) * (1.0f - beta2);
    m[i] = mi;
    v[i] = vi;
    var[i] = var[i] - (mi * alpha) / (sqrt(vi) + epsilon);
}

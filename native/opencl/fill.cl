// Byte and 32-bit fills for Checkpoint.Gpu device buffers (OpenCL C 1.2; runs on PoCL and GPU drivers).
// Launched through OpenCLAccelerator.GetKernel("fill", …) + EnqueueKernel; streams use clEnqueueFillBuffer
// for EnqueueFill, these kernels are the reference for the kernel-launch seam and for fills with wider patterns.
// Offsets and counts are in elements of the pointed-to type; global size may exceed count (guarded).

__kernel void fill_u8(__global uchar* destination, ulong offset, ulong count, uchar value)
{
    ulong i = get_global_id(0);
    if (i < count) destination[offset + i] = value;
}

__kernel void fill_u32(__global uint* destination, ulong offset, ulong count, uint value)
{
    ulong i = get_global_id(0);
    if (i < count) destination[offset + i] = value;
}

// 2-D example: fills a row-major matrix of rows x columns (leading dimension ld, in elements) with value.
__kernel void fill_matrix_f32(__global float* destination, ulong ld, ulong rows, ulong columns, float value)
{
    ulong column = get_global_id(0);
    ulong row = get_global_id(1);
    if (row < rows && column < columns) destination[row * ld + column] = value;
}

using System.Runtime.CompilerServices;

// ILGPU compiles kernels in a dynamic assembly named "ILGPURuntime"; the kernels' internal parameter types
// (IlgpuNnKernels.GemmShape, AdamParameters) must be visible to it.
[assembly: InternalsVisibleTo("ILGPURuntime")]

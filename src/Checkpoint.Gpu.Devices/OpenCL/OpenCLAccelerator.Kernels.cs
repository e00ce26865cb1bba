using System.Text;
using CheckpointGpu.Devices.Interop;

namespace CheckpointGpu.Devices.OpenCL;

/// <summary>Kernel-launch seam: programs from <c>native/opencl/*.cl</c> (embedded resources), built lazily per accelerator.</summary>
public sealed unsafe partial class OpenCLAccelerator
{
    private readonly Dictionary<string, SafeClProgramHandle> _programs = new(StringComparer.Ordinal);
    private readonly Dictionary<(string Program, string Kernel), OpenCLKernel> _kernels = [];
    private readonly object _kernelSync = new();

    /// <summary>Returns the kernel <paramref name="kernelName"/> of program <paramref name="programName"/>, building the program on first use.</summary>
    /// <param name="programName">A source file under <c>native/opencl/</c> without the <c>.cl</c> extension, e.g. <c>fill</c>.</param>
    /// <param name="kernelName">The <c>__kernel</c> function, e.g. <c>fill_u8</c>.</param>
    /// <returns>The cached kernel; owned by this accelerator.</returns>
    /// <exception cref="ArgumentException">No embedded program has that name.</exception>
    /// <exception cref="ObjectDisposedException">The accelerator is disposed.</exception>
    /// <exception cref="OpenCLException">Building failed (the message carries the build log) or the kernel does not exist (<c>CL_INVALID_KERNEL_NAME</c>).</exception>
    public OpenCLKernel GetKernel(string programName, string kernelName)
    {
        ArgumentException.ThrowIfNullOrEmpty(programName);
        ArgumentException.ThrowIfNullOrEmpty(kernelName);
        lock (_kernelSync)
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            if (_kernels.TryGetValue((programName, kernelName), out var cached)) return cached;
            if (!_programs.TryGetValue(programName, out var program))
            {
                program = BuildProgram(programName, LoadEmbeddedSource(programName));
                _programs.Add(programName, program);
            }
            var nameBytes = Encoding.ASCII.GetBytes(kernelName + "\0");
            int status;
            nint kernel;
            fixed (byte* name = nameBytes) kernel = OpenCLNative.clCreateKernel(program, name, &status);
            OpenCLNative.Check(status, "clCreateKernel", $"kernel '{kernelName}' in program '{programName}'");
            var result = new OpenCLKernel(this, programName, kernelName, new SafeClKernelHandle(kernel, program));
            _kernels.Add((programName, kernelName), result);
            return result;
        }
    }

    /// <summary>Enqueues a kernel launch on <paramref name="stream"/>, ordered with the stream's copies.</summary>
    /// <param name="stream">A stream of this accelerator.</param>
    /// <param name="kernel">A kernel from <see cref="GetKernel(string, string)"/> of this accelerator.</param>
    /// <param name="range">Global work size (1-D or 2-D).</param>
    /// <param name="arguments">Arguments in declaration order; buffers are kept alive until the launch completes.</param>
    /// <returns>The completion of the launch.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="stream"/> or <paramref name="kernel"/> is null.</exception>
    /// <exception cref="ArgumentException">The stream, kernel or a buffer belongs to another accelerator.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="range"/> has a non-positive or negative extent.</exception>
    /// <exception cref="ObjectDisposedException">The accelerator, stream or a buffer is disposed.</exception>
    /// <exception cref="OpenCLException">Setting an argument or enqueueing failed (e.g. <c>CL_INVALID_ARG_SIZE</c>).</exception>
    public DeviceEvent EnqueueKernel(AcceleratorStream stream, OpenCLKernel kernel, KernelRange range, params ReadOnlySpan<KernelArgument> arguments)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(kernel);
        if (!ReferenceEquals(stream.Accelerator, this)) throw new ArgumentException("The stream belongs to another accelerator.", nameof(stream));
        if (!ReferenceEquals(kernel.Accelerator, this)) throw new ArgumentException("The kernel was built by another accelerator.", nameof(kernel));
        ArgumentOutOfRangeException.ThrowIfLessThan(range.GlobalX, 1, nameof(range));
        ArgumentOutOfRangeException.ThrowIfNegative(range.GlobalY, nameof(range));
        var resources = new OperationResources(kernel.Handle, null);
        var args = arguments.ToArray();
        try
        {
            foreach (var argument in args)
            {
                if (argument.Buffer is null) continue;
                if (!ReferenceEquals(argument.Buffer.Accelerator, this)) throw new ArgumentException("A buffer argument belongs to another accelerator.", nameof(arguments));
                ObjectDisposedException.ThrowIf(argument.Buffer.IsDisposed, argument.Buffer);
                resources.AddHandle(argument.Buffer.Handle);
            }
        }
        catch
        {
            resources.Release();
            throw;
        }
        var clStream = (OpenCLStream)stream;
        return stream.EnqueueBackendOperation(resources, completion => clStream.EnqueueKernel(kernel, range, args, completion));
    }

    /// <summary>Builds a program from source for this device; on failure the exception carries the build log.</summary>
    internal SafeClProgramHandle BuildProgram(string programName, string source)
    {
        var bytes = Encoding.UTF8.GetBytes(source);
        int status;
        nint program;
        fixed (byte* text = bytes)
        {
            var strings = text;
            var length = (nuint)bytes.Length;
            program = OpenCLNative.clCreateProgramWithSource(_context, 1, &strings, &length, &status);
        }
        OpenCLNative.Check(status, "clCreateProgramWithSource", $"program '{programName}'");
        var handle = new SafeClProgramHandle(program, _context);
        var device = _device;
        status = OpenCLNative.clBuildProgram(handle, 1, &device, null, 0, 0);
        if (status != OpenCLErrors.Success)
        {
            var log = GetBuildLog(handle);
            handle.Dispose();
            throw new OpenCLException(status, "clBuildProgram", $"program '{programName}' failed to build for '{Name}'. Build log:\n{log}");
        }
        return handle;
    }

    private string GetBuildLog(SafeClProgramHandle program)
    {
        nuint size;
        if (OpenCLNative.clGetProgramBuildInfo(program, _device, OpenCLNative.CL_PROGRAM_BUILD_LOG, 0, null, &size) != OpenCLErrors.Success || size == 0)
            return "(no build log)";
        var bytes = new byte[(int)size];
        fixed (byte* p = bytes)
        {
            if (OpenCLNative.clGetProgramBuildInfo(program, _device, OpenCLNative.CL_PROGRAM_BUILD_LOG, size, p, null) != OpenCLErrors.Success)
                return "(no build log)";
        }
        return Encoding.UTF8.GetString(bytes).TrimEnd('\0').Trim();
    }

    private static string LoadEmbeddedSource(string programName)
    {
        var assembly = typeof(OpenCLAccelerator).Assembly;
        var suffix = "." + programName + ".cl";
        var resource = assembly.GetManifestResourceNames().FirstOrDefault(n => n.EndsWith(suffix, StringComparison.Ordinal))
            ?? throw new ArgumentException($"No OpenCL program '{programName}' is embedded (expected native/opencl/{programName}.cl).", nameof(programName));
        using var stream = assembly.GetManifestResourceStream(resource)!;
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return reader.ReadToEnd();
    }

    private void DisposeKernels()
    {
        lock (_kernelSync)
        {
            foreach (var kernel in _kernels.Values) kernel.Handle.Dispose();
            foreach (var program in _programs.Values) program.Dispose();
            _kernels.Clear();
            _programs.Clear();
        }
    }
}

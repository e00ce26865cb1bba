using System.Reflection;
using System.Runtime.InteropServices;

namespace CheckpointGpu.Mpi;

/// <summary>
/// Points MPI.NET at MPICH. MPI.NET 1.4.0 declares its native calls against MS-MPI (<c>msmpi.dll</c>); MPICH and MS-MPI
/// share the MPICH ABI (handle values, struct layouts), so a <see cref="NativeLibrary.SetDllImportResolver"/> on MPI.NET's
/// assembly maps <c>msmpi.dll</c> to MPICH's <c>libmpich.so.12</c> (Debian/Ubuntu package <c>mpich</c>). Open MPI's ABI
/// differs, so Open MPI cannot be used through MPI.NET.
/// </summary>
/// <remarks>Thread-safe; the resolver is installed once per process.</remarks>
public static class MpichLibrary
{
    /// <summary>The shared library loaded by default: MPICH 3.x/4.x's <c>libmpich.so.12</c>.</summary>
    public const string DefaultLibrary = "libmpich.so.12";

    /// <summary>Environment variable naming another MPICH-ABI library to load (a path or a soname), e.g. Intel MPI's <c>libmpi.so.12</c>.</summary>
    public const string LibraryVariable = "CKPT_MPI_LIBRARY";

    private static readonly Lock s_gate = new();
    private static IntPtr s_handle;

    /// <summary>The library name in effect: <see cref="LibraryVariable"/> if set, otherwise <see cref="DefaultLibrary"/>.</summary>
    public static string LibraryName => Environment.GetEnvironmentVariable(LibraryVariable) is { Length: > 0 } v ? v : DefaultLibrary;

    /// <summary>
    /// Loads MPICH and installs the resolver on MPI.NET's assembly (once; later calls return the same handle).
    /// Call before the first MPI.NET call; <see cref="MpiCoordination.Initialize"/> does.
    /// </summary>
    /// <returns>The native library handle.</returns>
    /// <exception cref="DllNotFoundException">The library could not be loaded; the message names the package to install (<c>apt-get install mpich</c>).</exception>
    public static IntPtr Install()
    {
        lock (s_gate)
        {
            if (s_handle != IntPtr.Zero) return s_handle;
            var handle = Load(LibraryName);
            NativeLibrary.SetDllImportResolver(typeof(MPI.Communicator).Assembly, Resolve);
            s_handle = handle;
            return handle;
        }
    }

    /// <summary>Loads <paramref name="library"/> or throws the error <see cref="Install"/> throws.</summary>
    /// <param name="library">A soname or path.</param>
    /// <returns>The native library handle.</returns>
    /// <exception cref="DllNotFoundException">Not loadable; the message says how to install MPICH.</exception>
    internal static IntPtr Load(string library)
    {
        if (NativeLibrary.TryLoad(library, out var handle)) return handle;
        throw new DllNotFoundException(
            $"MPI coordination needs MPICH's shared library '{library}', which could not be loaded. Install MPICH: " +
            "'apt-get install mpich' (Debian/Ubuntu; 'dnf install mpich' on Fedora, then add its lib directory to LD_LIBRARY_PATH), " +
            $"or set {LibraryVariable} to another MPICH-ABI library (Intel MPI, MVAPICH). Open MPI is not ABI-compatible with MPI.NET.");
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath) =>
        name.StartsWith("msmpi", StringComparison.OrdinalIgnoreCase) ? s_handle : IntPtr.Zero;
}

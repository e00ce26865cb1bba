using System.Runtime.InteropServices;

namespace CheckpointGpu.Incremental;

/// <summary>Creates hard links (POSIX <c>link(2)</c>, Windows <c>CreateHardLinkW</c>); .NET has no managed API for them.</summary>
internal static partial class HardLinks
{
    /// <summary>Makes <paramref name="newPath"/> a second name of <paramref name="existingPath"/>.</summary>
    /// <param name="existingPath">An existing file.</param>
    /// <param name="newPath">A path that must not exist yet, on the same filesystem.</param>
    /// <param name="error">The OS error text when it fails (another filesystem, no permission, unsupported).</param>
    /// <returns>True when the link exists.</returns>
    public static bool TryCreate(string existingPath, string newPath, out string? error)
    {
        error = null;
        try
        {
            if (OperatingSystem.IsWindows())
            {
                if (CreateHardLinkW(newPath, existingPath, 0)) return true;
            }
            else if (link(existingPath, newPath) == 0)
            {
                return true;
            }
            var code = Marshal.GetLastPInvokeError();
            error = $"{Marshal.GetPInvokeErrorMessage(code)} (error {code})";
            return false;
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            error = ex.Message;
            return false;
        }
    }

    [LibraryImport("libc", EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int link(string oldPath, string newPath);

    [LibraryImport("kernel32.dll", EntryPoint = "CreateHardLinkW", SetLastError = true, StringMarshalling = StringMarshalling.Utf16)]
    [return: MarshalAs(UnmanagedType.Bool)]
    private static partial bool CreateHardLinkW(string newFileName, string existingFileName, nint securityAttributes);
}

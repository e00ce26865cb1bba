using System.Globalization;

namespace CheckpointGpu;

/// <summary>
/// A parsed TensorFlow device string as used by <see cref="CheckpointOptions.IODevice"/> (TF's
/// <c>experimental_io_device</c>): <c>/job:&lt;name&gt;/replica:&lt;int&gt;/task:&lt;int&gt;/device:&lt;TYPE&gt;:&lt;int|*&gt;</c>,
/// every component optional, plus the legacy short form <c>/&lt;type&gt;:&lt;int|*&gt;</c> (for example <c>/cpu:0</c>).
/// </summary>
/// <remarks>
/// Grammar and normalisation follow TensorFlow's <c>DeviceSpecV2._string_to_components</c>
/// (<c>tensorflow/python/framework/device_spec.py</c>): the string is split on <c>/</c>, each part on <c>:</c>; empty
/// parts are ignored; <c>job:</c>, <c>replica:</c>, <c>task:</c> take one value; <c>device:TYPE:INDEX</c> or a bare
/// <c>TYPE[:INDEX]</c> whose type is one of TF's valid device types (<c>CPU</c>, <c>GPU</c>, <c>TPU</c>, <c>CUSTOM</c>,
/// <c>EPU</c>, case-insensitive in the bare form) names the device; <c>*</c> as an index means "any"; a second device
/// type or an unknown attribute is an error. <c>checkpoint_options.py</c> documents the option itself: "the device
/// to run checkpoint I/O ops on", typically <c>/job:localhost</c> for a localhost-only filesystem.
/// </remarks>
public sealed record IODeviceSpec
{
    private static readonly string[] ValidDeviceTypes = ["CPU", "GPU", "TPU", "CUSTOM", "EPU"];

    /// <summary>The forms that place checkpoint IO on this process's host (the staging ring), for error messages and docs.</summary>
    public const string AcceptedForms =
        "null (default), \"/cpu:0\", \"/device:CPU:0\", \"/job:localhost\", \"/job:localhost/device:CPU:0\", " +
        "\"/job:localhost/replica:0/task:0/device:CPU:0\" (any subset of these components; index 0 or *)";

    /// <summary>The job name, or <see langword="null"/> when absent.</summary>
    public string? Job { get; init; }

    /// <summary>The replica index, or <see langword="null"/> when absent.</summary>
    public int? Replica { get; init; }

    /// <summary>The task index, or <see langword="null"/> when absent.</summary>
    public int? Task { get; init; }

    /// <summary>The device type (<c>CPU</c>, <c>GPU</c>, …; upper case for the legacy short form), or <see langword="null"/>.</summary>
    public string? DeviceType { get; init; }

    /// <summary>The device index, or <see langword="null"/> when absent or <c>*</c>.</summary>
    public int? DeviceIndex { get; init; }

    /// <summary>
    /// True when the spec names this process's host CPU: job absent or <c>localhost</c>, replica and task absent or 0,
    /// device type absent or <c>CPU</c>, index absent, <c>*</c> or 0. Checkpoint IO for such a spec runs through the
    /// host staging ring (the IO device of this engine).
    /// </summary>
    public bool IsLocalHost =>
        (Job is null || Job == "localhost") && Replica is null or 0 && Task is null or 0 &&
        (DeviceType is null || string.Equals(DeviceType, "CPU", StringComparison.Ordinal)) && DeviceIndex is null or 0;

    /// <summary>Parses a TensorFlow device string.</summary>
    /// <param name="spec">The device string, e.g. <c>/job:localhost/replica:0/task:0/device:CPU:0</c>.</param>
    /// <returns>The parsed components.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="spec"/> is null.</exception>
    /// <exception cref="FormatException">The string is malformed: an unknown attribute, a non-integer replica, task or
    /// index, or two device types (TF raises <c>ValueError</c> in the same cases).</exception>
    public static IODeviceSpec Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        string? job = null, deviceType = null;
        int? replica = null, task = null, index = null;
        foreach (var part in spec.Split('/'))
        {
            var y = part.Split(':');
            if (y.Length == 2 && y[0] == "job") job = y[1];
            else if (y.Length == 2 && y[0] == "replica") replica = ParseInt(spec, "replica", y[1]);
            else if (y.Length == 2 && y[0] == "task") task = ParseInt(spec, "task", y[1]);
            else if (y.Length is 1 or 2 && Array.IndexOf(ValidDeviceTypes, y[0].ToUpperInvariant()) >= 0)
            {
                if (deviceType is not null) throw new FormatException($"Multiple device types in the device spec '{spec}'.");
                deviceType = y[0].ToUpperInvariant();
                if (y.Length == 2 && y[1] != "*") index = ParseInt(spec, "device index", y[1]);
            }
            else if (y.Length == 3 && y[0] == "device")
            {
                if (deviceType is not null) throw new FormatException($"Multiple device types in the device spec '{spec}'.");
                deviceType = y[1] is "cpu" or "gpu" ? y[1].ToUpperInvariant() : y[1]; // TF's _as_device_str_or_none
                if (y[2] != "*") index = ParseInt(spec, "device index", y[2]);
            }
            else if (y[0].Length != 0) // TF ignores parts whose first field is empty ("//", a leading '/')
                throw new FormatException($"Unknown attribute '{part}' in the device spec '{spec}'.");
        }
        return new IODeviceSpec { Job = job, Replica = replica, Task = task, DeviceType = deviceType, DeviceIndex = index };
    }

    /// <summary>
    /// Checks that <paramref name="ioDevice"/> is a device this engine can run checkpoint IO on (see
    /// <see cref="IsLocalHost"/>).
    /// </summary>
    /// <param name="ioDevice">The value of <see cref="CheckpointOptions.IODevice"/>; <see langword="null"/> is the default.</param>
    /// <param name="paramName">The parameter name reported in the exception.</param>
    /// <exception cref="ArgumentException">The string is malformed, or names a device other than this process's host
    /// CPU (an accelerator, another job, replica or task); the message names the value and the accepted forms.</exception>
    public static void Validate(string? ioDevice, string paramName)
    {
        if (ioDevice is null) return;
        IODeviceSpec parsed;
        try { parsed = Parse(ioDevice); }
        catch (FormatException e)
        {
            throw new ArgumentException($"IODevice '{ioDevice}' is not a TensorFlow device string: {e.Message} Accepted: {AcceptedForms}.", paramName, e);
        }
        if (!parsed.IsLocalHost)
            throw new ArgumentException(
                $"IODevice '{ioDevice}' names a device this engine does not run checkpoint IO on: checkpoint IO runs on this " +
                $"process's host through the pinned staging ring (accelerator buffers are streamed to it). Accepted: {AcceptedForms}.",
                paramName);
    }

    private static int ParseInt(string spec, string what, string text) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw new FormatException($"The {what} '{text}' in the device spec '{spec}' is not a non-negative integer.");
}

using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Tests;

/// <summary>
/// <see cref="CheckpointOptions.IODevice"/> as TF's <c>experimental_io_device</c>: TF's device-string grammar
/// (<c>tensorflow/python/framework/device_spec.py</c>), host forms accepted, accelerators and malformed strings refused.
/// </summary>
public sealed class IODeviceSpecTests : IClassFixture<CpuFixture>
{
    private readonly Accelerator _cpu;

    public IODeviceSpecTests(CpuFixture fixture) { _cpu = fixture.Accelerator; }

    [Theory]
    [InlineData("/job:localhost/replica:0/task:0/device:CPU:0", "localhost", 0, 0, "CPU", 0)]
    [InlineData("/job:ps/replica:1/task:2/device:GPU:3", "ps", 1, 2, "GPU", 3)]
    [InlineData("/cpu:0", null, null, null, "CPU", 0)]
    [InlineData("/GPU:1", null, null, null, "GPU", 1)]
    [InlineData("/device:cpu:*", null, null, null, "CPU", null)]
    [InlineData("/device:NOPE:42", null, null, null, "NOPE", 42)]
    [InlineData("job:localhost", "localhost", null, null, null, null)]
    [InlineData("", null, null, null, null, null)]
    public void Parse_FollowsTensorFlowsGrammar(string spec, string? job, int? replica, int? task, string? type, int? index)
    {
        var parsed = IODeviceSpec.Parse(spec);
        Assert.Equal(job, parsed.Job);
        Assert.Equal(replica, parsed.Replica);
        Assert.Equal(task, parsed.Task);
        Assert.Equal(type, parsed.DeviceType);
        Assert.Equal(index, parsed.DeviceIndex);
    }

    [Theory]
    [InlineData("/device:CPU:0/GPU:0")]      // two device types
    [InlineData("/job:localhost/bogus:1")]   // unknown attribute
    [InlineData("/replica:x")]               // not an integer
    [InlineData("/device:CPU")]              // device: needs type and index
    public void Parse_Malformed_ThrowsFormatException(string spec) =>
        Assert.Throws<FormatException>(() => IODeviceSpec.Parse(spec));

    [Theory]
    [InlineData("/cpu:0")]
    [InlineData("/CPU:0")]
    [InlineData("/device:CPU:0")]
    [InlineData("/job:localhost")]
    [InlineData("/job:localhost/device:CPU:0")]
    [InlineData("/job:localhost/replica:0/task:0/device:CPU:0")]
    [InlineData("/job:localhost/replica:0/task:0/cpu:*")]
    public void HostForms_AreAccepted_AndSaveWritesTheSameBytesAsTheDefault(string ioDevice)
    {
        using var dir = new TempDir("iodev");
        var holder = new AutoTrackable();
        using var v = Variable.Create(holder, "v", _cpu, DType.Float, new TensorShape(3), VariableInitializer.FromValues<float>([1f, 2f, 3f]));
        using var ckpt = new Checkpoint(("model", holder));
        var plain = ckpt.Write(dir.File("plain"));
        var withDevice = ckpt.Write(dir.File("io"), new CheckpointOptions { IODevice = ioDevice });
        Assert.Equal(File.ReadAllBytes(plain + ".index"), File.ReadAllBytes(withDevice + ".index"));
        Assert.Equal(File.ReadAllBytes(plain + ".data-00000-of-00001"), File.ReadAllBytes(withDevice + ".data-00000-of-00001"));
    }

    [Theory]
    [InlineData("/device:GPU:0")]
    [InlineData("/gpu:0")]
    [InlineData("/device:NOPE:42")]
    [InlineData("/job:worker/task:1")]
    [InlineData("/job:localhost/replica:0/task:0/device:CPU:1")]
    [InlineData("/device:CPU:0/device:GPU:0")]
    [InlineData("not a device")]
    public void OtherDevices_AndMalformedStrings_AreRefused_NamingTheValueAndTheAcceptedForms(string ioDevice)
    {
        var e = Assert.Throws<ArgumentException>(() => new CheckpointOptions { IODevice = ioDevice });
        Assert.Contains($"'{ioDevice}'", e.Message);
        Assert.Contains("/job:localhost/replica:0/task:0/device:CPU:0", e.Message);
    }

    [Fact]
    public void Null_IsTheDefault() => Assert.Null(new CheckpointOptions { IODevice = null }.IODevice);
}

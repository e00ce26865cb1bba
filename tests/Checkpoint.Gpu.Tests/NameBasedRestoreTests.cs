using CheckpointGpu.Devices;
using CheckpointGpu.Format;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Tests;

/// <summary>TF1 name-based checkpoints (no object graph) restore by variable name (spec §7.9).</summary>
public sealed class NameBasedRestoreTests : IClassFixture<CpuFixture>
{
    private readonly Accelerator _cpu;

    public NameBasedRestoreTests(CpuFixture fixture) { _cpu = fixture.Accelerator; }

    private sealed class Module : AutoTrackable
    {
        public Variable Scalar(Accelerator acc, string edge, string tfName) =>
            AddVariable(edge, acc, DType.Float, TensorShape.Scalar, VariableInitializer.Constant(-1f), tfName);
    }

    [CorpusFact]
    public void HalfPlusThree_ExistingVariables_RestoredByName()
    {
        var module = new Module();
        using var a = module.Scalar(_cpu, "slope", "a");
        using var b = module.Scalar(_cpu, "b_edge", "b");
        using var c = module.Scalar(_cpu, "c", "c");
        using var ckpt = new Checkpoint(("model", module));
        var status = ckpt.Restore(TestUtil.Prefix("smv1-tf10-half-plus-three", "variables/variables"));
        Assert.IsType<NameBasedLoadStatus>(status);
        // save_counter is not in a TF1 checkpoint but is optional for Restore.
        status.AssertConsumed().AssertExistingObjectsMatched().AssertNontrivialMatch();
        Assert.Equal([0.5f], a.Read<float>());
        Assert.Equal([3.0f], b.Read<float>());
        Assert.Equal([3.0f], c.Read<float>());
    }

    [CorpusFact]
    public void MyTestModel_VariableCreatedAfterRestore_RestoredOnCreation_MatchesTfCrc()
    {
        var module = new Module();
        using var ckpt = new Checkpoint(("m", module));
        var prefix = TestUtil.Prefix("v1-my-test-model-tf14", "my_test_model-1000");
        var status = ckpt.Restore(prefix);
        using var w = Variable.Create(module, "weights", _cpu, DType.Float, new TensorShape(21, 1), fullName: "W");
        TestUtil.AssertMatchesTf(prefix, "W", w);
        status.AssertConsumed();
    }

    [CorpusFact]
    public void NameBased_VariableMissingFromCheckpoint_AssertConsumedFails()
    {
        var module = new Module();
        using var a = module.Scalar(_cpu, "a", "a");
        using var missing = module.Scalar(_cpu, "z", "not_in_checkpoint");
        using var ckpt = new Checkpoint(("model", module));
        var status = ckpt.Restore(TestUtil.Prefix("smv1-tf10-half-plus-three", "variables/variables"));
        Assert.Equal([0.5f], a.Read<float>());
        Assert.Equal([-1f], missing.Read<float>());
        var ex = Assert.Throws<CheckpointMismatchException>(() => status.AssertExistingObjectsMatched());
        Assert.Contains(ex.Unmatched, u => u.Contains("not_in_checkpoint", StringComparison.Ordinal));
        Assert.Throws<CheckpointMismatchException>(() => status.AssertNontrivialMatch());
    }
}

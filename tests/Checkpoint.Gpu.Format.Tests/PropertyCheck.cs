using FsCheck;
using FsCheck.Fluent;

namespace CheckpointGpu.Format.Tests;

/// <summary>FsCheck 3 from plain [Fact]s (FsCheck.Xunit is not available here).</summary>
internal static class PropertyCheck
{
    public static void ForAll<T>(Func<T, bool> property, int maxTest = 100) =>
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(maxTest), Prop.ForAll(property));

    public static void ForAll<T1, T2, T3>(Func<T1, T2, T3, bool> property, int maxTest = 100) =>
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(maxTest), Prop.ForAll(property));
}

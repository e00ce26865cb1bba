using System.Text;
using CheckpointGpu.TestSupport;

namespace CheckpointGpu.Format.Tests;

public sealed class CheckpointStateFileTests
{
    public static TheoryData<string> StateFiles()
    {
        var rows = new TheoryData<string>();
        if (TfCorpus.Root is null) return rows;
        foreach (var f in Directory.EnumerateFiles(TfCorpus.Root, CheckpointStateFile.FileName, SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            rows.Add(Path.GetRelativePath(TfCorpus.Root, Path.GetDirectoryName(f)!));
        return rows;
    }

    [CorpusTheory]
    [MemberData(nameof(StateFiles))]
    public void Read_EveryCorpusStateFile_ParsesAndFormatsBackToTfBytes(string relativeDir)
    {
        var dir = Path.Combine(TfCorpus.RequireRoot(), relativeDir);
        var state = CheckpointStateFile.Read(dir);
        Assert.NotNull(state);
        Assert.NotEmpty(state.ModelCheckpointPath);
        Assert.Contains(state.ModelCheckpointPath, state.AllModelCheckpointPaths);
        Assert.True(state.AllModelCheckpointTimestamps.Count is 0 || state.AllModelCheckpointTimestamps.Count == state.AllModelCheckpointPaths.Count);
        // TF's Python writer produced these bytes; our formatter must agree (escapes, double repr, field order).
        Assert.Equal(File.ReadAllText(Path.Combine(dir, CheckpointStateFile.FileName)), CheckpointStateFile.Format(state));
    }

    [CorpusTheory]
    [MemberData(nameof(StateFiles))]
    public void LatestCheckpoint_EveryCorpusStateFile_FindsAnExistingIndex(string relativeDir)
    {
        var dir = Path.Combine(TfCorpus.RequireRoot(), relativeDir);
        var latest = CheckpointStateFile.LatestCheckpoint(dir);
        Assert.NotNull(latest);
        Assert.True(Path.IsPathRooted(latest));
        Assert.True(File.Exists(latest + ".index"));
    }

    [CorpusFact]
    public void LatestCheckpoint_TflearnWindowsAbsolutePath_FallsBackToBaseName()
    {
        var dir = TfCorpus.Case("v1-tflearn-tf212-compat");
        var state = CheckpointStateFile.Read(dir)!;
        Assert.Equal(@"c:\Users\psund\Documents\chatbot intents - Copy\chatbot intents - Copy\model.tflearn", state.ModelCheckpointPath);
        Assert.Equal(Path.Combine(dir, "model.tflearn"), CheckpointStateFile.LatestCheckpoint(dir));
    }

    [CorpusFact]
    public void Read_Keras3Manager_ValuesMatchSpec()
    {
        var state = CheckpointStateFile.Read(TfCorpus.Case("obj-keras3-tf219-manager-3ckpts"))!;
        Assert.Equal("ckpt-1", state.ModelCheckpointPath);
        Assert.Equal(["ckpt-9", "ckpt-10", "ckpt-1"], state.AllModelCheckpointPaths);
        Assert.Equal([1757461169.1449866, 1757461320.2403755, 1757465538.6608334], state.AllModelCheckpointTimestamps);
        Assert.Equal(1757459281.8194308, state.LastPreservedTimestamp);
    }

    [Fact]
    public void Write_Keras3Manager_ReproducesTfBytesAtomically()
    {
        using var dir = new TempDir("state");
        var state = new CheckpointState("ckpt-1", ["ckpt-9", "ckpt-10", "ckpt-1"], [1757461169.1449866, 1757461320.2403755, 1757465538.6608334], 1757459281.8194308);
        CheckpointStateFile.Write(dir.Path, state);
        const string expected = "model_checkpoint_path: \"ckpt-1\"\nall_model_checkpoint_paths: \"ckpt-9\"\nall_model_checkpoint_paths: \"ckpt-10\"\nall_model_checkpoint_paths: \"ckpt-1\"\nall_model_checkpoint_timestamps: 1757461169.1449866\nall_model_checkpoint_timestamps: 1757461320.2403755\nall_model_checkpoint_timestamps: 1757465538.6608334\nlast_preserved_timestamp: 1757459281.8194308\n";
        Assert.Equal(expected, File.ReadAllText(dir.File("checkpoint")));
        Assert.Single(Directory.GetFiles(dir.Path));
        Assert.Equal(state, CheckpointStateFile.Read(dir.Path));
    }

    [Fact]
    public void Write_AbsolutePathsInsideDirectory_AreStoredRelative()
    {
        using var dir = new TempDir("staterel");
        CheckpointStateFile.Write(dir.Path, new CheckpointState(dir.File("ckpt-3")));
        Assert.Equal("model_checkpoint_path: \"ckpt-3\"\nall_model_checkpoint_paths: \"ckpt-3\"\n", File.ReadAllText(dir.File("checkpoint")));
        Assert.Throws<ArgumentException>(() => CheckpointStateFile.Write(dir.Path, new CheckpointState("checkpoint")));
    }

    [Theory]
    [InlineData(1672531200.0, "1672531200.0")]
    [InlineData(1606867791.8105, "1606867791.8105")]
    [InlineData(0.1, "0.1")]
    [InlineData(1e16, "1e+16")]
    [InlineData(1234567890123456.0, "1234567890123456.0")]
    [InlineData(0.0001, "0.0001")]
    [InlineData(0.00001, "1e-05")]
    [InlineData(-2.5, "-2.5")]
    [InlineData(1.5e300, "1.5e+300")]
    [InlineData(double.PositiveInfinity, "inf")]
    public void PythonRepr_MatchesPython(double value, string expected)
    {
        // Expected strings are what CPython prints for repr(value).
        Assert.Equal(expected, PythonFloat.Repr(value));
    }

    [Fact]
    public void Quote_NonAsciiAndControls_UsesOctalLikePythonProtobuf()
    {
        Assert.Equal("\"\\344\\270\\255\"", CheckpointStateFile.Quote("中"));
        Assert.Equal("\"a\\\"b\\'c\\\\d\\n\\t\\r\\001\\177\"", CheckpointStateFile.Quote("a\"b'c\\d\n\t\r\u0001\u007f"));
    }

    [Fact]
    public void Parse_EscapesNumbersCommentsAndLists()
    {
        var text = "# comment\nmodel_checkpoint_path: 'x\\344\\270\\255\\x41\\101\\u00e9'  \"tail\"\nall_model_checkpoint_paths: [\"a\", \"b\"]\n" +
                   "all_model_checkpoint_timestamps: 1e3\nall_model_checkpoint_timestamps: -0.5\nlast_preserved_timestamp: 12\n";
        var s = CheckpointStateFile.Parse(Encoding.UTF8.GetBytes(text));
        Assert.Equal("x中AAétail", s.ModelCheckpointPath);
        Assert.Equal(["a", "b"], s.AllModelCheckpointPaths);
        Assert.Equal([1000.0, -0.5], s.AllModelCheckpointTimestamps);
        Assert.Equal(12.0, s.LastPreservedTimestamp);
    }

    [Theory]
    [InlineData("model_checkpoint_path: \"a\"\nunknown_field: 3\n")]
    [InlineData("model_checkpoint_path: \"unterminated\n")]
    [InlineData("model_checkpoint_path: \"a\\q\"\n")]
    [InlineData("all_model_checkpoint_paths: \"a\"\n")]
    [InlineData("model_checkpoint_path: \"\"\n")]
    [InlineData("model_checkpoint_path: \"a\"\nall_model_checkpoint_timestamps: abc\n")]
    [InlineData("model_checkpoint_path \"a\"\n")]
    public void Parse_Malformed_ThrowsMalformedStateFile(string text)
    {
        var ex = Assert.Throws<CheckpointFormatException>(() => CheckpointStateFile.Parse(Encoding.UTF8.GetBytes(text)));
        Assert.Equal(CheckpointFormatError.MalformedStateFile, ex.Error);
        Assert.False(ex.IsUnsupportedInput);
    }

    [Fact]
    public void TryRead_MissingOrMalformed_ReturnsFalse_LatestIsNull()
    {
        using var dir = new TempDir("statebad");
        Assert.False(CheckpointStateFile.TryRead(dir.Path, out _));
        Assert.Null(CheckpointStateFile.Read(dir.Path));
        File.WriteAllText(dir.File("checkpoint"), "garbage here");
        Assert.False(CheckpointStateFile.TryRead(dir.Path, out _));
        Assert.Null(CheckpointStateFile.LatestCheckpoint(dir.Path));
        File.WriteAllText(dir.File("checkpoint"), "model_checkpoint_path: \"ckpt-1\"\n");
        Assert.Null(CheckpointStateFile.LatestCheckpoint(dir.Path)); // no ckpt-1.index
    }
}

using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text;

namespace CheckpointGpu.Format;

/// <summary>
/// Reads and writes the <c>checkpoint</c> state file: protobuf text format of <c>CheckpointState</c>
/// (<c>checkpoint_management.py</c>; spec section 1.4).
/// </summary>
/// <remarks>
/// Writing mirrors TF byte for byte: one <c>name: value</c> line per value in field order, strings quoted with
/// Python protobuf's escapes (non-ASCII bytes as 3-digit octal), doubles in Python <c>repr</c> form, trailing
/// newline; written to <c>checkpoint.tmp&lt;32 hex&gt;</c> and renamed over <c>checkpoint</c>.
/// Stateless and thread-safe (concurrent writers to one directory race like TF's do: last rename wins).
/// </remarks>
public static class CheckpointStateFile
{
    /// <summary>The default state file name, <c>checkpoint</c>.</summary>
    public const string FileName = "checkpoint";

    /// <summary>Largest state file read, in bytes (16 MiB).</summary>
    public const int MaxFileBytes = 16 << 20;

    /// <summary>Reads <c>&lt;directory&gt;/checkpoint</c>.</summary>
    /// <param name="directory">Directory holding the state file.</param>
    /// <returns>The state, or null when the file does not exist.</returns>
    /// <exception cref="CheckpointFormatException">The file cannot be parsed, or <c>model_checkpoint_path</c> is empty (<see cref="CheckpointFormatError.MalformedStateFile"/>).</exception>
    /// <exception cref="IOException">The file exists but cannot be read.</exception>
    public static CheckpointState? Read(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) return null;
        var info = new FileInfo(path);
        if (info.Length > MaxFileBytes)
            ThrowHelper.Format(CheckpointFormatError.LimitExceeded, path, "state file is too large", length: info.Length, comparison: $"limit {MaxFileBytes} bytes");
        return Parse(File.ReadAllBytes(path), path);
    }

    /// <summary>Reads the state like TF's <c>get_checkpoint_state</c>: missing or unparsable files give false.</summary>
    /// <param name="directory">Directory holding the state file.</param>
    /// <param name="state">The parsed state, or null.</param>
    /// <returns>True when a valid state file was read.</returns>
    public static bool TryRead(string directory, [NotNullWhen(true)] out CheckpointState? state)
    {
        state = null;
        try
        {
            state = Read(directory);
            return state is not null;
        }
        catch (CheckpointFormatException) { return false; }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }

    /// <summary>Parses state-file text.</summary>
    /// <param name="text">The file contents (UTF-8).</param>
    /// <param name="pathForErrors">File name used in error messages.</param>
    /// <exception cref="CheckpointFormatException">Syntax error, unknown field, wrong value type, or empty <c>model_checkpoint_path</c>.</exception>
    public static CheckpointState Parse(ReadOnlySpan<byte> text, string pathForErrors = FileName) =>
        new TextParser(text.ToArray(), pathForErrors).Parse();

    /// <summary>Formats a state exactly as TF's Python writer does.</summary>
    /// <param name="state">The state; paths are written as given.</param>
    /// <returns>The file text (ends with a newline).</returns>
    public static string Format(CheckpointState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var sb = new StringBuilder();
        if (state.ModelCheckpointPath.Length > 0) sb.Append("model_checkpoint_path: ").Append(Quote(state.ModelCheckpointPath)).Append('\n');
        foreach (var p in state.AllModelCheckpointPaths) sb.Append("all_model_checkpoint_paths: ").Append(Quote(p)).Append('\n');
        foreach (var t in state.AllModelCheckpointTimestamps) sb.Append("all_model_checkpoint_timestamps: ").Append(PythonFloat.Repr(t)).Append('\n');
        // proto3 omits a zero scalar, so TF never prints last_preserved_timestamp: 0.0
        if (state.LastPreservedTimestamp is { } lp && (lp != 0 || double.IsNegative(lp)))
            sb.Append("last_preserved_timestamp: ").Append(PythonFloat.Repr(lp)).Append('\n');
        return sb.ToString();
    }

    /// <summary>
    /// Atomically and durably writes <c>&lt;directory&gt;/checkpoint</c> (step 9 of <see cref="BundleCommit"/>'s protocol):
    /// absolute paths are made relative to <paramref name="directory"/> (TF's <c>save_relative_paths</c>), the text goes to a
    /// temporary file (<see cref="TemporaryFileNames.ForStateFile"/>) which is flushed, renamed over the state file, and the
    /// directory is flushed.
    /// </summary>
    /// <param name="directory">Directory of the checkpoints; created if missing.</param>
    /// <param name="state">The state to write.</param>
    /// <param name="storage">The storage seam; <see cref="LocalShardStorage.Instance"/> when null.</param>
    /// <exception cref="ArgumentException"><c>ModelCheckpointPath</c> is empty or names the state file itself.</exception>
    /// <exception cref="IOException">Writing, flushing or renaming failed (the previous state file is untouched and the
    /// temporary removed), or the final directory flush failed (the new state file is in place, not known to be durable).</exception>
    public static void Write(string directory, CheckpointState state, IShardStorage? storage = null)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(state);
        storage ??= LocalShardStorage.Instance;
        if (string.IsNullOrEmpty(state.ModelCheckpointPath)) throw new ArgumentException("ModelCheckpointPath must not be empty.", nameof(state));
        var target = Path.GetFullPath(Path.Combine(directory, FileName));
        var relative = state with
        {
            ModelCheckpointPath = MakeRelative(directory, state.ModelCheckpointPath),
            AllModelCheckpointPaths = state.AllModelCheckpointPaths.Select(p => MakeRelative(directory, p)).ToArray(),
        };
        if (string.Equals(Path.GetFullPath(Path.Combine(directory, relative.ModelCheckpointPath)), target, StringComparison.Ordinal))
            throw new ArgumentException($"ModelCheckpointPath '{state.ModelCheckpointPath}' collides with the state file itself.", nameof(state));
        Directory.CreateDirectory(directory);
        var temp = TemporaryFileNames.ForStateFile(target);
        try
        {
            using (var file = storage.CreateForWrite(temp, preferDirectIO: false))
            {
                file.Write(Encoding.UTF8.GetBytes(Format(relative)), 0);
                file.FlushToDisk();
            }
            storage.Move(temp, target);
        }
        catch
        {
            try { storage.Delete(temp); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            throw;
        }
        storage.FlushDirectory(Path.GetDirectoryName(target)!);
    }

    /// <summary>
    /// TF's <c>latest_checkpoint</c>: the absolute prefix named by the state file, only if
    /// <c>&lt;prefix&gt;.index</c> exists. A stored absolute path from another machine (e.g.
    /// <c>c:\Users\…\model.tflearn</c>) falls back to its base name inside <paramref name="directory"/>.
    /// </summary>
    /// <param name="directory">Directory holding the state file.</param>
    /// <returns>The absolute prefix, or null when there is no valid state or no index file.</returns>
    public static string? LatestCheckpoint(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (!TryRead(directory, out var state)) return null;
        var stored = state.ModelCheckpointPath;
        var candidate = Path.IsPathRooted(stored) ? stored : Path.Combine(directory, stored);
        if (File.Exists(BundleNaming.IndexFile(candidate))) return Path.GetFullPath(candidate);
        var baseName = BaseName(stored);
        if (baseName.Length == 0) return null;
        var local = Path.Combine(directory, baseName);
        return File.Exists(BundleNaming.IndexFile(local)) ? Path.GetFullPath(local) : null;
    }

    /// <summary>Joins a stored path onto <paramref name="directory"/> unless it is absolute (TF's reading rule 4).</summary>
    /// <param name="directory">Directory holding the state file.</param>
    /// <param name="storedPath">A path from the state file.</param>
    public static string ResolvePath(string directory, string storedPath)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(storedPath);
        return Path.IsPathRooted(storedPath) ? storedPath : Path.Combine(directory, storedPath);
    }

    private static string BaseName(string path)
    {
        var i = path.LastIndexOfAny(['/', '\\']);
        return i < 0 ? path : path[(i + 1)..];
    }

    private static string MakeRelative(string directory, string path) =>
        Path.IsPathRooted(path) ? Path.GetRelativePath(Path.GetFullPath(directory), path) : path;

    /// <summary>Python protobuf text_format string escaping (CEscape, as_utf8=False).</summary>
    internal static string Quote(string value)
    {
        var sb = new StringBuilder(value.Length + 2).Append('"');
        foreach (var b in Encoding.UTF8.GetBytes(value))
        {
            switch (b)
            {
                case (byte)'\n': sb.Append("\\n"); break;
                case (byte)'\r': sb.Append("\\r"); break;
                case (byte)'\t': sb.Append("\\t"); break;
                case (byte)'"': sb.Append("\\\""); break;
                case (byte)'\'': sb.Append("\\'"); break;
                case (byte)'\\': sb.Append("\\\\"); break;
                default:
                    if (b < 0x20 || b >= 0x7F) sb.Append('\\').Append(Convert.ToString(b, 8).PadLeft(3, '0'));
                    else sb.Append((char)b);
                    break;
            }
        }
        return sb.Append('"').ToString();
    }

    /// <summary>A small protobuf text-format parser for the four CheckpointState fields.</summary>
    private sealed class TextParser(byte[] text, string path)
    {
        private int _pos;
        private int _line = 1;

        public CheckpointState Parse()
        {
            string? model = null;
            var paths = new List<string>();
            var stamps = new List<double>();
            double? last = null;
            while (true)
            {
                SkipSpace();
                if (_pos >= text.Length) break;
                var name = ReadIdentifier();
                SkipSpace();
                var hasColon = Peek() == ':';
                if (hasColon) { _pos++; SkipSpace(); }
                var isList = Peek() == '[';
                if (isList) { _pos++; SkipSpace(); }
                do
                {
                    if (isList && Peek() == ']') break;
                    switch (name)
                    {
                        case "model_checkpoint_path":
                            if (isList) Fail("model_checkpoint_path is not repeated");
                            model = ReadString();
                            break;
                        case "all_model_checkpoint_paths":
                            paths.Add(ReadString());
                            break;
                        case "all_model_checkpoint_timestamps":
                            stamps.Add(ReadNumber());
                            break;
                        case "last_preserved_timestamp":
                            if (isList) Fail("last_preserved_timestamp is not repeated");
                            last = ReadNumber();
                            break;
                        default:
                            Fail($"unknown field '{name}' (CheckpointState has model_checkpoint_path, all_model_checkpoint_paths, all_model_checkpoint_timestamps, last_preserved_timestamp)");
                            break;
                    }
                    SkipSpace();
                    if (!isList) break;
                    if (Peek() == ',') { _pos++; SkipSpace(); continue; }
                    if (Peek() != ']') Fail("expected ',' or ']' in a list value");
                }
                while (true);
                if (isList)
                {
                    if (Peek() != ']') Fail("expected ']'");
                    _pos++;
                }
                else if (!hasColon) Fail($"expected ':' after field name '{name}'");
                SkipSpace();
                if (Peek() is ';' or ',') _pos++;
            }
            if (string.IsNullOrEmpty(model))
                ThrowHelper.Format(CheckpointFormatError.MalformedStateFile, path, "state file has an empty or missing model_checkpoint_path");
            return new CheckpointState(model, paths, stamps, last);
        }

        private int Peek() => _pos < text.Length ? text[_pos] : -1;

        private void SkipSpace()
        {
            while (_pos < text.Length)
            {
                var c = text[_pos];
                if (c == '#') { while (_pos < text.Length && text[_pos] != '\n') _pos++; continue; }
                if (c is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\f' or (byte)'\v') { _pos++; continue; }
                if (c == '\n') { _pos++; _line++; continue; }
                break;
            }
        }

        private string ReadIdentifier()
        {
            var start = _pos;
            while (_pos < text.Length && (char.IsAsciiLetterOrDigit((char)text[_pos]) || text[_pos] == '_')) _pos++;
            if (_pos == start) Fail("expected a field name");
            return Encoding.ASCII.GetString(text, start, _pos - start);
        }

        private string ReadString()
        {
            if (Peek() is not ('"' or '\'')) Fail("expected a quoted string");
            var bytes = new List<byte>();
            // Adjacent literals concatenate, as in C++/Python text format.
            while (Peek() is '"' or '\'')
            {
                var quote = text[_pos++];
                while (true)
                {
                    if (_pos >= text.Length || text[_pos] == '\n') Fail("unterminated string");
                    var c = text[_pos++];
                    if (c == quote) break;
                    if (c != '\\') { bytes.Add(c); continue; }
                    if (_pos >= text.Length) Fail("unterminated escape");
                    var e = text[_pos++];
                    switch (e)
                    {
                        case (byte)'n': bytes.Add((byte)'\n'); break;
                        case (byte)'r': bytes.Add((byte)'\r'); break;
                        case (byte)'t': bytes.Add((byte)'\t'); break;
                        case (byte)'a': bytes.Add(7); break;
                        case (byte)'b': bytes.Add(8); break;
                        case (byte)'f': bytes.Add(12); break;
                        case (byte)'v': bytes.Add(11); break;
                        case (byte)'\\': case (byte)'\'': case (byte)'"': case (byte)'?': bytes.Add(e); break;
                        case (byte)'x' or (byte)'X':
                        {
                            var v = 0; var n = 0;
                            while (n < 2 && _pos < text.Length && Uri.IsHexDigit((char)text[_pos])) { v = (v * 16) + Convert.ToInt32(((char)text[_pos++]).ToString(), 16); n++; }
                            if (n == 0) Fail("\\x escape without hex digits");
                            bytes.Add((byte)v);
                            break;
                        }
                        case >= (byte)'0' and <= (byte)'7':
                        {
                            var v = e - '0'; var n = 1;
                            while (n < 3 && _pos < text.Length && text[_pos] is >= (byte)'0' and <= (byte)'7') { v = (v * 8) + (text[_pos++] - '0'); n++; }
                            if (v > 255) Fail("octal escape above \\377");
                            bytes.Add((byte)v);
                            break;
                        }
                        case (byte)'u' or (byte)'U':
                        {
                            var digits = e == 'u' ? 4 : 8;
                            if (_pos + digits > text.Length) Fail("truncated \\u escape");
                            if (!int.TryParse(Encoding.ASCII.GetString(text, _pos, digits), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var cp) || cp > 0x10FFFF || cp is >= 0xD800 and <= 0xDFFF)
                                Fail("invalid \\u escape");
                            _pos += digits;
                            bytes.AddRange(Encoding.UTF8.GetBytes(char.ConvertFromUtf32(cp)));
                            break;
                        }
                        default:
                            Fail($"invalid escape '\\{(char)e}'");
                            break;
                    }
                }
                SkipSpace();
            }
            return Encoding.UTF8.GetString(bytes.ToArray());
        }

        private double ReadNumber()
        {
            var start = _pos;
            while (_pos < text.Length && (char.IsAsciiLetterOrDigit((char)text[_pos]) || text[_pos] is (byte)'.' or (byte)'-' or (byte)'+')) _pos++;
            var token = Encoding.ASCII.GetString(text, start, _pos - start);
            if (token.Length == 0) Fail("expected a number");
            var t = token.ToLowerInvariant();
            var negative = t.StartsWith('-');
            var body = negative || t.StartsWith('+') ? t[1..] : t;
            double value;
            if (body is "inf" or "infinity" or "inff" or "infinityf") value = double.PositiveInfinity;
            else if (body is "nan" or "nanf") value = double.NaN;
            else if (body.StartsWith("0x", StringComparison.Ordinal))
            {
                if (!ulong.TryParse(body.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var h)) Fail($"invalid number '{token}'");
                value = h;
            }
            else
            {
                if (body.EndsWith('f') && !body.Contains('x', StringComparison.Ordinal)) body = body[..^1];
                if (body.Length == 0 || !(char.IsAsciiDigit(body[0]) || body[0] == '.')
                    || !double.TryParse(body, NumberStyles.AllowDecimalPoint | NumberStyles.AllowExponent, CultureInfo.InvariantCulture, out value))
                {
                    Fail($"invalid number '{token}'");
                    value = 0;
                }
            }
            return negative ? -value : value;
        }

        [DoesNotReturn]
        private void Fail(string what) =>
            ThrowHelper.Format(CheckpointFormatError.MalformedStateFile, path, what, offset: _pos,
                comparison: string.Create(CultureInfo.InvariantCulture, $"line {_line}"));
    }
}

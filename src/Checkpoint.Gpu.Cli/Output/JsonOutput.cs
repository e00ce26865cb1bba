using System.Text;
using System.Text.Json;

namespace CheckpointGpu.Cli.Output;

/// <summary>Writes one indented JSON document (the <c>--json</c> output of every command) to a text writer.</summary>
internal static class JsonOutput
{
    public static void Write(TextWriter output, Action<Utf8JsonWriter> writeBody)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            writeBody(w);
            w.WriteEndObject();
        }
        output.WriteLine(Encoding.UTF8.GetString(stream.ToArray()));
    }
}

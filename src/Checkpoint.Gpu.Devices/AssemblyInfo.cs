using System.Runtime.CompilerServices;

// Every P/Invoke in this assembly is a [LibraryImport] with blittable signatures (STYLE B4).
[assembly: DisableRuntimeMarshalling]

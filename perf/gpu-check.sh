#!/usr/bin/env bash
# GPU check (issue 12): builds a self-contained bundle here and runs it.
#
#   perf/gpu-check.sh OUT_DIR [--device cuda] [--gib N] [--bundle DIR]   build DIR, then run DIR/run.sh OUT_DIR
#   perf/gpu-check.sh --build-only [--bundle DIR]                         build only: copy DIR (or DIR.tar.gz) to the GPU host
#   DIR/run.sh OUT_DIR [--device cuda] [--gib N]                          on the GPU host: no .NET SDK needed
#
# The bundle (default artifacts/gpu-check-bundle): app/ holds `dotnet publish --self-contained -r linux-x64` of
# ckpt, gpucheck (the Devices contract suite run by reflection + the determinism check) and the benchmarks,
# published into one folder so they share one runtime; corpus/ is the TF-written reference corpus; run.sh runs
# the Devices contract suite, `ckpt restore` of every corpus prefix, the determinism check and the end-to-end
# benchmark on --device (default cuda), writing OUT_DIR/results.jsonl and OUT_DIR/summary.txt.
# CI runs it end to end with --device ilgpu-cpu (only the device differs on a GPU host).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bundle="$repo/artifacts/gpu-check-bundle"; build_only=false; out=""; run_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) bundle="$2"; shift 2;;
    --build-only) build_only=true; shift;;
    --device|--gib) run_args+=("$1" "$2"); shift 2;;
    -*) echo "gpu-check.sh: unknown option $1" >&2; exit 2;;
    *) out="$1"; shift;;
  esac
done
if ! $build_only && [ -z "$out" ]; then echo "usage: perf/gpu-check.sh OUT_DIR [--device D] [--gib N] [--bundle DIR] | --build-only [--bundle DIR]" >&2; exit 2; fi
corpus="${CKPT_TF_CORPUS:-$repo/../shared/testdata/tf-checkpoints}"
[ -f "$corpus/MANIFEST.md" ] || { echo "gpu-check.sh: TF corpus not found at $corpus" >&2; exit 2; }

rm -rf "$bundle"; mkdir -p "$bundle/app"
for project in src/Checkpoint.Gpu.Cli perf/Checkpoint.Gpu.GpuCheck perf/Checkpoint.Gpu.Benchmarks; do
  dotnet publish "$repo/$project" -c Release -r linux-x64 --self-contained -o "$bundle/app" \
    -p:DebugType=none -p:DebugSymbols=false -p:SatelliteResourceLanguages=en --nologo -v quiet > "$bundle/publish.log" 2>&1 \
    || { cat "$bundle/publish.log" >&2; exit 1; }
done
rm -f "$bundle/publish.log" "$bundle"/app/*.xml
cp -r "$corpus" "$bundle/corpus"
cp "$repo/perf/gpu-check-run.sh" "$bundle/run.sh"; chmod +x "$bundle/run.sh"
echo "gpu-check bundle: $bundle ($(du -sh "$bundle" | cut -f1); app $(du -sh "$bundle/app" | cut -f1), corpus $(du -sh "$bundle/corpus" | cut -f1))" >&2
$build_only && exit 0
exec "$bundle/run.sh" "$out" "${run_args[@]}"

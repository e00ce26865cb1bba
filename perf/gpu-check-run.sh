#!/usr/bin/env bash
# The GPU check, run from a bundle built by perf/gpu-check.sh (copied into the bundle as run.sh).
# Needs nothing but this bundle (a self-contained .NET runtime is inside), a Linux x64 host and, for the
# benchmark's limit, fio. On a GPU host: ./run.sh OUT_DIR            (device: cuda)
# In CI / here:                          ./run.sh OUT_DIR --device ilgpu-cpu --gib 0.25
# Writes OUT_DIR/results.jsonl (one JSON object per check or measurement), OUT_DIR/summary.txt (one screen) and
# per-part logs. Exit code: 0 every check passed, 1 a check failed, 2 the device is not available.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: run.sh OUT_DIR [--device cuda] [--gib N]}"; shift
device=cuda; gib=1
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2;;
    --gib) gib="$2"; shift 2;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2;;
  esac
done
mkdir -p "$out"; out="$(cd "$out" && pwd)"
app="$here/app"; corpus="$here/corpus"
results="$out/results.jsonl"; : > "$results"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
json_str() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | tr -d '\n'; }

"$app/ckpt" devices > "$out/devices.txt" 2>&1
"$app/ckpt" devices --json > "$out/devices.json" 2>&1
"$app/gpucheck" contract --device "$device" > "$out/contract.jsonl" 2> "$out/contract.err"
contract_rc=$?
if [ "$contract_rc" -eq 2 ]; then
  echo "{\"check\":\"device\",\"device\":\"$device\",\"ok\":false,\"error\":\"$(json_str "$(cat "$out/contract.err")")\"}" >> "$results"
  { echo "GPU check on $device: device not available"; cat "$out/contract.err"; cat "$out/devices.txt"; } > "$out/summary.txt"
  cat "$out/summary.txt"; exit 2
fi
cat "$out/contract.jsonl" >> "$results"

# ckpt restore of every corpus case: restore on create into the device, TF's CRCs checked from device memory, re-saved.
restore_ok=0; restore_fail=0; failed_cases=()
mkdir -p "$out/restore"
while IFS= read -r index; do
  prefix="${index%.index}"; rel="${prefix#"$corpus"/}"; name="$(echo "$rel" | tr '/' '_')"
  start=$(date +%s%N)
  "$app/ckpt" restore "$prefix" --device "$device" --resave "$out/restore/$name.resaved/ckpt" --json > "$out/restore/$name.json" 2> "$out/restore/$name.err"
  rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  identical=null
  if [ $rc -eq 0 ] && grep -q '"object_based": *true' "$out/restore/$name.json"; then
    identical=true
    cmp -s "$prefix.index" "$out/restore/$name.resaved/ckpt.index" || identical=false
    for data in "$prefix".data-*; do
      cmp -s "$data" "$out/restore/$name.resaved/ckpt${data#"$prefix"}" || identical=false
    done
  fi
  ok=false; { [ $rc -eq 0 ] && [ "$identical" != false ]; } && ok=true
  if $ok; then restore_ok=$((restore_ok + 1)); else restore_fail=$((restore_fail + 1)); failed_cases+=("$rel"); fi
  echo "{\"check\":\"restore\",\"device\":\"$device\",\"prefix\":\"$(json_str "$rel")\",\"exit\":$rc,\"resave_identical\":$identical,\"ok\":$ok,\"milliseconds\":$ms}" >> "$results"
  rm -rf "$out/restore/$name.resaved"
done < <(find "$corpus" -name '*.index' | sort)

"$app/gpucheck" determinism --device "$device" > "$out/determinism.jsonl" 2> "$out/determinism.err"; det_rc=$?
cat "$out/determinism.jsonl" >> "$results"

bench_dir="$out/e2e-scratch"; mkdir -p "$bench_dir"
"$app/Checkpoint.Gpu.Benchmarks" e2e --gib "$gib" --device "$device" --repeats 1 --no-torch --dir "$bench_dir" > "$out/e2e.jsonl" 2> "$out/e2e.err"; bench_rc=$?
rm -rf "$bench_dir"
grep '^{' "$out/e2e.jsonl" >> "$results" || true

contract_pass=$(grep -c '"ok":true' "$out/contract.jsonl" || true)
contract_fail=$(grep -c '"ok":false' "$out/contract.jsonl" || true)
ratios=$(grep '"name":"ratios"' "$out/e2e.jsonl" | head -1)
{
  echo "GPU check on --device $device ($(date -u +%Y-%m-%dT%H:%M:%SZ), bundle $(basename "$here"))"
  grep -E "^$device " "$out/devices.txt" || sed -n '1,6p' "$out/devices.txt"
  echo "contract suite      $contract_pass passed, $contract_fail failed$( [ "$contract_fail" -gt 0 ] && grep '"ok":false' "$out/contract.jsonl" | sed -n 's/.*"test":"\([^"]*\)".*/ \1/p' | head -5 | tr '\n' ';')"
  echo "ckpt restore        $restore_ok of $((restore_ok + restore_fail)) corpus prefixes OK (TF CRCs from device memory, re-save identical)${failed_cases:+; failed: ${failed_cases[*]}}"
  echo "determinism         $( [ $det_rc -eq 0 ] && echo "OK: resumed run bit-identical" || echo "FAILED (see determinism.jsonl / .err)")"
  echo "e2e benchmark       $( [ $bench_rc -eq 0 ] && echo "ran ($gib GiB)" || echo "FAILED (exit $bench_rc, see e2e.err)")"
  [ -n "$ratios" ] && echo "  $ratios"
  echo "results             $results"
} > "$out/summary.txt"
cat "$out/summary.txt"
[ "$contract_rc" -eq 0 ] && [ "$restore_fail" -eq 0 ] && [ "$det_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]

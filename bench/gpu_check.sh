#!/usr/bin/env bash
# The GPU check, one prepared script for a lent GPU machine (the device tool runs it from the repo
# root; $OUT, when set, receives the logs and the table):
#   1. builds gradprobe with CUDA forced on (GRADPROBE_CUDA=ON; CUDAARCHS defaults to 90 here);
#      if that build fails and a prebuilt wheel lies in .whl/ (carried), installs that instead.
#      Other wheels in .whl/ are dependencies the machine lacks (plotly on the lent H200's image),
#      fetched beforehand where pip works: python3 -m pip download --no-deps --only-binary=:all:
#      --python-version 3.12 --platform manylinux_2_28_x86_64 -d .whl plotly==7.1.0 (.whl/ is ignored
#      by git: carry it to the GPU machine),
#   2. runs the GPU tests (tests marked gpu),
#   3. runs the GPU benchmarks (bench/test_stats_gpu.py: the statistics against the copy floor;
#      bench/test_probe_overhead_gpu.py: BERT-base pretraining steps with and without the probe),
#   4. shows the profiler recording GPU samples (NVML) and device-timed step phases,
#   5. runs tests/native/cuda_sanitize_driver.py under compute-sanitizer (memcheck on everything;
#      racecheck, synccheck and initcheck on gradprobe's kernel), in the time that is left,
#   6. prints a short table. Copy it into bench/RESULTS.md with the date and the commit.
# GPU_CHECK_BUDGET_S (default 480) bounds the whole script: the sanitizer stage gets what is left.
# GPU_CHECK_SANITIZERS picks the sanitizer tools (default: memcheck racecheck synccheck initcheck).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-bench/out}
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET_S:-480}
export GRADPROBE_CUDA=ON CUDAARCHS=${CUDAARCHS:-90} PYTHONUNBUFFERED=1
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
SITE=$(mktemp -d) DEPS=$(mktemp -d)
summary=()
note() { summary+=("$1"); echo "$1"; }

deps=$(ls .whl/*.whl 2>/dev/null | grep -v '/gradprobe-')
if [ -n "$deps" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$DEPS" $deps || exit 1
fi
echo "== build (CUDAARCHS=$CUDAARCHS)"
if "$PY" -m pip install -q --no-build-isolation --no-deps --no-index --target "$SITE" . >"$OUT_DIR/build.log" 2>&1; then
  note "build: built here in ${SECONDS}s"
elif ls .whl/gradprobe-*.whl >/dev/null 2>&1; then
  tail -20 "$OUT_DIR/build.log"
  "$PY" -m pip install -q --no-deps --no-index --target "$SITE" .whl/gradprobe-*.whl || exit 1
  note "build: FAILED here (build.log); the carried wheel was installed instead"
else
  tail -40 "$OUT_DIR/build.log"; exit 1
fi
export PYTHONPATH="$SITE:$DEPS${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import gradprobe, torch; print('torch', torch.__version__, torch.cuda.get_device_name()); \
print('backends:', gradprobe.backends()); print('unavailable:', gradprobe.unavailable_backends())"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader || true

echo "== GPU tests"
"$PY" -m pytest -q -p no:cacheprovider --continue-on-collection-errors --timeout 300 -m gpu tests 2>&1 | tee "$OUT_DIR/gpu_tests.log" | tail -25
tests_status=${PIPESTATUS[0]}
note "GPU tests: $(tail -1 "$OUT_DIR/gpu_tests.log") (rc $tests_status)"

echo "== GPU benchmarks"
GRADPROBE_BENCH_OUT="$OUT_DIR" "$PY" -m pytest -q -p no:cacheprovider --timeout 300 -m gpu bench -s 2>&1 \
  | tee "$OUT_DIR/gpu_bench.log" | grep -v '^|' | tail -30
bench_status=${PIPESTATUS[0]}
note "GPU benchmarks: $(tail -1 "$OUT_DIR/gpu_bench.log") (rc $bench_status)"

echo "== profiler: GPU samples and device-timed phases of a short run"
"$PY" - <<'PYEOF' 2>&1 | tee "$OUT_DIR/gpu_profiler.log"
import tempfile, time, torch, gradprobe
model = torch.nn.Sequential(torch.nn.Linear(4096, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 1)).cuda()
opt = torch.optim.SGD(model.parameters(), lr=1e-3)
out = tempfile.mkdtemp() + "/run"
with gradprobe.Probe(model, opt, out_dir=out, config={"profiler": {"system_interval": 0.1}}) as probe:
    deadline = time.time() + 3
    while time.time() < deadline:
        model(torch.randn(512, 4096, device="cuda")).sum().backward(); opt.step(); opt.zero_grad(); probe.step()
run = gradprobe.open_run(out)
gpu = run.system()[run.system()["device"].str.startswith("gpu")]
print(gpu.groupby(["device", "metric"])["value"].agg(["count", "mean", "max"]).to_string())
print("unavailable:", run.meta["profiler"]["unavailable"])
print(run.phases()[["forward", "backward", "optimizer", "gradprobe", "total"]].describe().loc[["count", "50%"]])
assert len(gpu) > 0, "no GPU samples recorded"
PYEOF
profiler_status=${PIPESTATUS[0]}
note "profiler: rc $profiler_status"

echo "== compute-sanitizer on tests/native/cuda_sanitize_driver.py"
SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
sanitize_status=0
if [ -z "$SANITIZER" ]; then
  note "compute-sanitizer: not found on this machine"
else
  read -r -a tools <<<"${GPU_CHECK_SANITIZERS:-memcheck racecheck synccheck initcheck}"
  for i in "${!tools[@]}"; do
    tool=${tools[$i]}
    left=$(( BUDGET - SECONDS ))
    share=$(( left / (${#tools[@]} - i) ))
    if [ "$share" -lt 20 ]; then note "sanitizer $tool: skipped (${left}s of the budget left)"; continue; fi
    filter=()
    [ "$tool" != memcheck ] && filter=(--kernel-name kns=gp_stats_kernel)
    timeout "$share" "$SANITIZER" --tool "$tool" "${filter[@]}" --error-exitcode 3 \
      "$PY" tests/native/cuda_sanitize_driver.py >"$OUT_DIR/sanitize_$tool.log" 2>&1
    rc=$?
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && sanitize_status=1
    note "sanitizer $tool: rc $rc ($( [ "$rc" -eq 124 ] && echo "timed out after ${share}s" || \
      grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY|driver: ok|Error' "$OUT_DIR/sanitize_$tool.log"))"
    [ "$rc" -ne 0 ] && grep -m8 -E '^=========' "$OUT_DIR/sanitize_$tool.log"
  done
fi

echo
echo "== table (bench/out/stats_table.md)"
cat "$OUT_DIR/stats_table.md" 2>/dev/null
echo
echo "== summary"
printf '%s\n' "${summary[@]}"
echo "== commit ${GPU_CHECK_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}, $(date -u +%F), ${SECONDS}s"
exit $(( tests_status || bench_status || profiler_status || sanitize_status ))

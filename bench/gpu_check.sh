#!/usr/bin/env bash
# The GPU check, one prepared script for a lent GPU machine (the device tool runs it from the repo
# root; $OUT, when set, receives the logs and the table):
#   1. builds gradprobe with CUDA forced on (GRADPROBE_CUDA=ON; CUDAARCHS defaults to 90 here),
#   2. runs the GPU tests (tests marked gpu),
#   3. runs the GPU benchmarks (bench/test_stats_gpu.py) and prints a short table,
#   4. shows the profiler recording GPU samples (NVML) and device-timed step phases.
# Copy the table into bench/RESULTS.md with the date and the commit.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-bench/out}
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
export GRADPROBE_CUDA=ON CUDAARCHS=${CUDAARCHS:-90} PYTHONUNBUFFERED=1
SITE=$(mktemp -d)
echo "== build (CUDAARCHS=$CUDAARCHS)"
"$PY" -m pip install -q --no-build-isolation --no-deps --no-index --target "$SITE" . >"$OUT_DIR/build.log" 2>&1 \
  || { tail -40 "$OUT_DIR/build.log"; exit 1; }
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import gradprobe; print('backends:', gradprobe.backends()); print('unavailable:', gradprobe.unavailable_backends())"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader || true
echo "== GPU tests"
"$PY" -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tee "$OUT_DIR/gpu_tests.log" | tail -15
tests_status=${PIPESTATUS[0]}
echo "== GPU benchmarks"
GRADPROBE_BENCH_OUT="$OUT_DIR" "$PY" -m pytest -q -p no:cacheprovider -m gpu bench -s 2>&1 \
  | tee "$OUT_DIR/gpu_bench.log" | tail -30
bench_status=${PIPESTATUS[0]}
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
echo "== commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%F)"
exit $(( tests_status || bench_status || profiler_status ))

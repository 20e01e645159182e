#!/usr/bin/env bash
# One-shot GPU check of cianna_jax (issue 16): at most ~8 minutes on an NVIDIA H200 whose
# python3 has jax (CUDA), optax, numpy and pytest; nothing is installed, the project runs
# from this source tree (PYTHONPATH=.).
#
#   bash benchmarks/gpu_check.sh              # from the repository root (or anywhere)
#
# Writes one results file: $OUT/gpu_check.txt when OUT is set, else
# benchmarks/gpu_check_results.txt (each part's whole output beside it, partN.log).
# Parts, each under its own time limit (GPU_CHECK_PARTS="2 4" reruns some of them):
#   1. the golden-parity tests (CIANNA's V-1.0 and V-1.1 networks, the YOLO loss) and the
#      Pallas parity tests on the GPU, as users run them: no TF32 override in the
#      environment, so CIANNA's FP32 mode must itself ask for full float32 products
#      (a TF32 product would miss the golden tolerances);
#   2. the YOLO loss forward+backward, Pallas kernel against the XLA reference, at
#      SDC1-like shapes (target: Pallas >= 2x), the first shape's association terms also
#      alone (--terms: the kernel's share); yolo_loss.py --block-cells times launch
#      settings, each a Pallas compilation: seconds to tens of seconds on the H200;
#   3. CIANNA's MNIST network, inference and training, FP32 / BF16 / FP16;
#   4. the SDC1 detector at 512x512, inference and training, BF16, TF32 and FP32.
# Without a GPU it says so at the top of the file and runs a tiny subset of each part
# on the CPU (a check of the script itself, XLA's optimisations mostly off to save compile
# time).  GPU_CHECK_QUICK=1 forces the quick subset; GPU_CHECK_TESTS="tests/a.py ..."
# replaces part 1's list of tests.
set -u
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
PARTS=" ${GPU_CHECK_PARTS:-1 2 3 4} "
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; RES="$OUT/gpu_check.txt"; else RES="benchmarks/gpu_check_results.txt"; fi
LOGDIR=$(dirname "$RES")
: > "$RES"
START=$(date +%s)

log() { echo "$*" | tee -a "$RES"; }
part() {  # part <n> <title> <seconds> <command...>: run with a time limit; the output's
  # end goes to the results file, all of it to partN.log beside it
  local n=$1 title=$2 limit=$3; shift 3
  case "$PARTS" in *" $n "*) ;; *) return 0 ;; esac
  log ""
  log "== $n. $title (limit ${limit} s) =="
  local t0=$(date +%s)
  timeout --signal=INT --kill-after=15 "$limit" "$@" 2>&1 | tee "$LOGDIR/part$n.log" | tail -n 60 | tee -a "$RES"
  local rc=${PIPESTATUS[0]}
  log "-- $title: exit code $rc ($(( $(date +%s) - t0 )) s)$([ "$rc" = 124 ] && echo ', TIME LIMIT REACHED')"
}

# one Python (a JAX import costs seconds): the GPU's kind (or an empty line), the
# versions line, then the classic-emitters XLA flag where this jaxlib has it (or empty)
INFO=$($PY - <<'EOF' 2>/dev/null
try:
    import jax
    d = jax.devices("gpu")
    print(d[0].device_kind if d else "")
except Exception:
    print("")
try:
    import jax, jaxlib, numpy, optax
    print(f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, numpy {numpy.__version__}, "
          f"optax {optax.__version__}")
except Exception as e:
    print(f"{type(e).__name__}: {e}")
try:
    from cianna_jax.xla_cpu import classic_emitters_flag
    print(classic_emitters_flag())
except Exception:
    print("")
EOF
)
GPU=$(echo "$INFO" | sed -n 1p)
log "cianna_jax GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), host $(hostname)"
log "$(echo "$INFO" | sed -n 2p)"
if [ -n "$GPU" ]; then
  log "GPU: $GPU"
  export CIANNA_JAX_TEST_OPTIMIZED=1  # the tests compile as users do (tests/conftest.py)
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$RES"
  QUICK=${GPU_CHECK_QUICK:-0}
else
  log "NO GPU: JAX sees no GPU on this machine; running a quick subset on the CPU (a check of"
  log "the script, not GPU numbers; XLA optimisations mostly off: JAX_DISABLE_MOST_OPTIMIZATIONS=1,"
  log "classic CPU fusion emitters where this XLA has them)."
  QUICK=1
  # compiling costs more than these tiny runs take (the same programs compile 3-5x faster)
  export JAX_DISABLE_MOST_OPTIMIZATIONS=1
  # XLA's classic fusion emitters where this jaxlib has them (an unknown flag in XLA_FLAGS
  # aborts every Python that starts JAX)
  CLASSIC=$(echo "$INFO" | sed -n 3p)
  if [ -n "$CLASSIC" ]; then export XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }$CLASSIC"; fi
fi

# 1. parity tests (CIANNA's FP32 mode must not silently use TF32)
if [ -z "$GPU" ]; then
  # a check of the script: two golden forward tests and the Pallas threefry key check
  # (the golden tests run in the normal test suite too); no pytest plugins to load
  TESTS=(tests/test_golden.py::test_forward_matches_cianna
         tests/pallas/test_threefry.py::test_supported_keys -k "dense_only or supported_keys")
  LIMIT1=120
  export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
elif [ "$QUICK" = 1 ]; then
  TESTS=(tests/test_golden.py tests/pallas/test_threefry.py -k "dense_only or conv_pad_stride or threefry")
  LIMIT1=150
else
  # test_sums / test_norm_layers: the group norm's fused-pass VJP (2026-12-05), not yet run on a GPU
  TESTS=(tests/test_golden.py tests/test_fused_conv_pool.py tests/pallas tests/yolo/test_loss.py
         tests/test_layers_v11.py tests/test_optimizers.py tests/test_v11_api.py
         tests/test_sums.py tests/test_norm_layers.py)
  LIMIT1=175  # 2026-12-04 on the H200, 8 processes: 250 of these 259 tests in 184 s
fi
if [ -n "${GPU_CHECK_TESTS:-}" ]; then read -r -a TESTS <<< "$GPU_CHECK_TESTS"; fi
XDIST=()
if [ -n "$GPU" ] && $PY -c "import xdist" 2>/dev/null; then
  # compiling is what these tests cost: several processes share the GPU (each takes
  # memory as it needs it instead of 75% of the card at start), each test to the next
  # free one (--dist load; with loadfile each file stays on one process, and the two YOLO
  # loss files, 130 tests compiled for the GPU, were the likely end of 2026-12-04's runs)
  XDIST=(-n 14 --dist load)
  export XLA_PYTHON_CLIENT_PREALLOCATE=false
fi
# -rp: part1.log names every passed test, so the tests a time limit stopped can be named
part 1 "golden and Pallas parity tests, float32 as users run it (no TF32 override)" $LIMIT1 \
  $PY -m pytest -q -p no:cacheprovider -o addopts= -rpfEs --tb=short --durations=10 "${XDIST[@]}" "${TESTS[@]}"
unset XLA_PYTHON_CLIENT_PREALLOCATE

# 2. YOLO loss: Pallas kernel vs XLA reference
if [ "$QUICK" = 1 ]; then
  part 2 "YOLO loss forward+backward, Pallas vs XLA" 120 $PY benchmarks/yolo_loss.py --quick --terms 1
else
  # three shapes: on the H200 each took 25-30 s, mostly compiling (2026-12-04); the
  # first also with the terms alone (the kernel's share; two more compilations), so the
  # third, a crowded shape already measured (0.72x), may meet the time limit
  part 2 "YOLO loss forward+backward, Pallas vs XLA (SDC1-like shapes)" 110 \
    $PY benchmarks/yolo_loss.py --first 3 --terms 1
fi

# 3. MNIST network, 4. SDC1 detector
Q=$([ "$QUICK" = 1 ] && echo --quick)
part 3 "MNIST network: inference and training, FP32 / BF16 / FP16" 100 $PY benchmarks/gpu_bench.py mnist $Q
# 61 s on the H200 for BF16 and FP32 (2026-12-04); TF32 added since
part 4 "SDC1 detector 512x512: inference and training, BF16 / TF32 / FP32" 95 $PY benchmarks/gpu_bench.py sdc1 --size 512 $Q

log ""
log "total $(( $(date +%s) - START )) s; results in $RES"
exit 0

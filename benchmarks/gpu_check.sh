#!/usr/bin/env bash
# One-shot GPU check of cianna_jax (issue 16): at most ~8 minutes on an NVIDIA H200 whose
# python3 has jax (CUDA), optax, numpy and pytest; nothing is installed, the project runs
# from this source tree (PYTHONPATH=.).
#
#   bash benchmarks/gpu_check.sh              # from the repository root (or anywhere)
#
# Writes one results file: $OUT/gpu_check.txt when OUT is set, else
# benchmarks/gpu_check_results.txt.  Parts, each under its own time limit:
#   1. the golden-parity and Pallas parity tests on the GPU in full float32
#      (NVIDIA_TF32_OVERRIDE=0, JAX_DEFAULT_MATMUL_PRECISION=highest: CIANNA's FP32 mode);
#   2. the YOLO loss forward+backward, Pallas kernel against the XLA reference, at
#      SDC1-like shapes (target: Pallas >= 2x);
#   3. CIANNA's MNIST network, inference and training, FP32 / BF16 / FP16;
#   4. the SDC1 detector at 512x512, inference and training, BF16 and FP32.
# Without a GPU it says so at the top of the file and runs a tiny subset of each part
# on the CPU (a check of the script itself, XLA's optimisations mostly off to save compile
# time).  GPU_CHECK_QUICK=1 forces the quick subset.
set -u
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; RES="$OUT/gpu_check.txt"; else RES="benchmarks/gpu_check_results.txt"; fi
: > "$RES"
START=$(date +%s)

log() { echo "$*" | tee -a "$RES"; }
part() {  # part <title> <seconds> <command...>: run with a time limit, output to the file
  local title=$1 limit=$2; shift 2
  log ""
  log "== $title (limit ${limit} s) =="
  local t0=$(date +%s)
  timeout --signal=INT --kill-after=15 "$limit" "$@" 2>&1 | tail -n 60 | tee -a "$RES"
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

# 1. parity tests in full float32 (CIANNA's FP32 mode must not silently use TF32)
if [ -z "$GPU" ]; then
  # a check of the script: two golden forward tests and the Pallas threefry key check
  # (the golden tests run in the normal test suite too); no pytest plugins to load
  TESTS=(tests/test_golden.py::test_forward_matches_cianna
         tests/pallas/test_threefry.py::test_supported_keys -k "dense_only or supported_keys")
  LIMIT1=120
  export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
elif [ "$QUICK" = 1 ]; then
  TESTS=(tests/test_golden.py tests/pallas/test_threefry.py -k "dense_only or conv_pad_stride or threefry")
  LIMIT1=300
else
  TESTS=(tests/test_golden.py tests/test_fused_conv_pool.py tests/pallas)
  LIMIT1=240
fi
part "golden and Pallas parity tests, float32 (TF32 off)" $LIMIT1 \
  env NVIDIA_TF32_OVERRIDE=0 JAX_DEFAULT_MATMUL_PRECISION=highest \
  $PY -m pytest -q -p no:cacheprovider -o addopts= -rs "${TESTS[@]}"

# 2. YOLO loss: Pallas kernel vs XLA reference
if [ "$QUICK" = 1 ]; then
  part "YOLO loss forward+backward, Pallas vs XLA" 120 $PY benchmarks/yolo_loss.py --quick
else
  part "YOLO loss forward+backward, Pallas vs XLA (SDC1-like shapes)" 75 $PY benchmarks/yolo_loss.py
fi

# 3. MNIST network, 4. SDC1 detector
Q=$([ "$QUICK" = 1 ] && echo --quick)
part "MNIST network: inference and training, FP32 / BF16 / FP16" 90 $PY benchmarks/gpu_bench.py mnist $Q
part "SDC1 detector 512x512: inference and training" 120 $PY benchmarks/gpu_bench.py sdc1 --size 512 $Q

log ""
log "total $(( $(date +%s) - START )) s; results in $RES"
exit 0

#!/usr/bin/env bash
# The GPU checks in one go, on a machine with CuPy and a CUDA device:
# the CuPy test suite, the curvature engine at N=5,000 and 50,000, and whole
# fits on the GPU then on the CPU. Figures go to the report's GPU section.
# Wheels in .whl/ (e.g. array-api-compat, fetched with `pip download`) are
# installed first.
# Usage: [PYTHON=python3] bash benchmarks/run_gpu_checks.sh [OUTPUT_DIR]
set -u
cd "$(dirname "$0")/.."
mkdir -p "${1:-gpu_checks}"
out=$(cd "${1:-gpu_checks}" && pwd)  # absolute: the fits run in benchmarks/
export SCIPY_ARRAY_API=1 PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
# Wheels carried to a machine without a network (array-api-compat, which
# that image lacks) install beside the repository, which is on the path.
site=$PWD
if compgen -G ".whl/*.whl" > /dev/null; then
  "$py" -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && site=/tmp/site:$PWD
fi
export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
"$py" -c "import cupy; print('cupy', cupy.__version__, cupy.cuda.runtime.getDeviceCount(), 'device(s)')"
timeout 300 "$py" -m pytest -q -p no:cacheprovider --durations=5 tests/test_cupy.py 2>&1 | tee "$out/tests.log" | tail -15
for n in 5000 50000; do
  timeout 120 "$py" benchmarks/bench_curvature.py --backend cupy --n-samples "$n" --repeat 5
done 2>&1 | tee "$out/gpu_curvature.log"
cd benchmarks
timeout 240 "$py" bench_gpu_fit.py --backends cupy --n-samples 20000 --no-mlp 2>&1 | tee "$out/gpu_fit.log"
timeout 240 "$py" bench_gpu_fit.py --backends numpy --n-samples 20000 --models default 2>&1 | tee "$out/cpu_fit.log"

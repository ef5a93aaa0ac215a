#!/usr/bin/env bash
# The GPU check, one command on a machine with one CUDA GPU and this repository (about 6 minutes):
# installs what it needs, runs the CUDA-only tests (tests/test_compile.py's CUDA-graph test) and
# measures sac_v2 on HalfCheetah-v4 eager, --compile, --compile --cudagraphs beside SB3 SAC
# (LeanRL's protocol: SPS after the first 500 updates). Everything lands in benchmarks/results/:
# gpu_check_<device>.txt (the GPU, the tests' outcome) and speed_sac_v2_HalfCheetah-v4_<device>...md.
#   bash benchmarks/gpu_check.sh                      # on the GPU machine
#   GPU_CHECK_DEVICE=cpu bash benchmarks/gpu_check.sh # the same plumbing on a CPU (tests skip)
set -uo pipefail
cd "$(dirname "$0")/.."
device=${GPU_CHECK_DEVICE:-cuda}
report=benchmarks/results/gpu_check_$device.txt
# A GPU machine may have no package index: install where it can, else use what is there.
pip install -q -r requirements.txt -r requirements-dev.txt -r benchmarks/requirements.txt \
    || echo "gpu_check: could not install the requirements; using what is installed" >&2
{
    date -u +"%Y-%m-%d %H:%M UTC"
    python -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
    echo "git: $(git describe --always --dirty 2>/dev/null || echo unknown)"
    echo
    echo "$ python -m pytest tests/test_compile.py -m slow -k cuda -rs"
} > "$report"
timeout 240 python -m pytest tests/test_compile.py -m slow -k cuda -rs -q -p no:cacheprovider 2>&1 \
    | tail -n 15 | tee -a "$report"
tests_status=${PIPESTATUS[0]}
echo "tests exit status: $tests_status" | tee -a "$report"
timeout 300 python benchmarks/speed.py --device "$device" --env-id HalfCheetah-v4 --compile \
    --rounds 1 --learning-starts 1000 --learn-steps 3000 --tag _gpu_check
speed_status=$?
echo "speed exit status: $speed_status" | tee -a "$report"
exit $(( tests_status != 0 && tests_status != 5 || speed_status != 0 ))

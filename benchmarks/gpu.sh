#!/usr/bin/env bash
# The GPU figures BENCHMARKS.md asks of a lent device, in one command of under 10 minutes (the
# timeouts below add up to 600 s): the training loop against its step for `make run`'s MAF and
# the dSprites beta-VAE (benchmarks/loop_rate.py), MAF's step with 1 and 64 seeds
# (benchmarks.bench), the peers' steps and whole runs beside ours (benchmarks/peers). Each
# writes one JSON line (and its log) into the folder given.
#
#   bash benchmarks/gpu.sh OUT_DIR            # on the device: bash benchmarks/gpu.sh "$OUT"
#
# The device's image has JAX with CUDA, flax, optax, chex, orbax and PyTorch; the zoo's other
# packages travel as wheels in .whl (carry it; the device tool's README says how to download
# them for its Python 3.12): tensorflow-datasets, array-record, grain, ml-collections, distrax,
# flowjax (with equinox, paramax, jaxtyping, lineax, wadler-lindig) and their own needs.
# SHORT=1 is its trial on a CPU, to run before a lease: every entry, with the fewest steps
# (MAF_STEPS and VAE_STEPS, multiples of the presets' log_every, 100), one short timing window
# and 3x the time allowed; PYTHON=.venv-peers/bin/python has the peers (`make bench-peers`).
#
#   SHORT=1 PYTHON=.venv-peers/bin/python bash benchmarks/gpu.sh /tmp/gpu-trial
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu.sh OUT_DIR}
if [ "${SHORT:-0}" = 1 ]; then
  MAF_STEPS=${MAF_STEPS:-100} VAE_STEPS=${VAE_STEPS:-100}
  window=(--seconds=0.5 --repeats=1) rounds=1 allowance=3
else
  window=() rounds=2 allowance=1
fi
mkdir -p "$out"
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=.
if [ -d .whl ]; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:.
fi

measure() {  # name, seconds allowed, module and arguments
  local name=$1 seconds=$(($2 * allowance))
  shift 2
  timeout "$seconds" "$python" -m "$@" >"$out/$name.json" 2>"$out/$name.log" \
    || echo "$name: failed or out of time (see $name.log)" >&2
  tail -n 1 "$out/$name.json"
}

measure loop_maf 75 benchmarks.loop_rate maf default --steps="${MAF_STEPS:-3000}"
measure loop_beta_vae 180 benchmarks.loop_rate beta_vae default --steps="${VAE_STEPS:-2000}"
measure step_maf_1_seed 40 benchmarks.bench --case=maf_tabular --num_seeds=1 --json "${window[@]}"
measure step_maf_64_seeds 50 benchmarks.bench --case=maf_tabular --num_seeds=64 --json "${window[@]}"
measure peer_flowjax 20 benchmarks.peers.flowjax_maf "${window[@]}"
measure peer_torch_conv_vae 25 benchmarks.peers.torch_conv_vae "${window[@]}"
measure whole_run_maf_flowjax 60 benchmarks.peers.whole_runs maf --steps="${MAF_STEPS:-1000}" \
  --rounds="$rounds"
measure whole_run_beta_vae_torch 150 benchmarks.peers.whole_runs beta_vae \
  --steps="${VAE_STEPS:-500}" --rounds=1

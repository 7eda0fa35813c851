#!/usr/bin/env bash
# Runs `deeptrain train RECIPE [ARGS]` on NPROCS ranks of this machine with mpirun.
#
#   launch/local.sh NPROCS RECIPE [ARGS...]      e.g. launch/local.sh 2 recipes/demo.yaml
#
# The recipe's `parallel` section gives the layout (dp defaults to NPROCS / pp). Each rank uses
# its share of the cores (recipe `threads` overrides). Root needs --allow-run-as-root, more ranks
# than cores need --oversubscribe; ranks are not bound to cores (a rank may use several threads).
# Exit codes are deeptrain's: 0 done, 1 bad input, 3 runtime failure or a lost rank, 64 usage.
# mpirun runs under launch/supervise.sh, which ends it once a rank has reported a lost peer.
set -uo pipefail

if [[ $# -lt 2 || ! "$1" =~ ^[0-9]+$ || "$1" -lt 1 ]]; then
    echo "usage: launch/local.sh NPROCS RECIPE [deeptrain train options...]" >&2
    exit 64
fi
nprocs=$1
recipe=$2
shift 2

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${DEEPTRAIN:-$here/../.build/release/deeptrain}
if [[ ! -x $bin ]]; then
    echo "error: $bin not found; build it first (make build)" >&2
    exit 64
fi
if ! command -v mpirun > /dev/null; then
    echo "error: mpirun not found; install openmpi-bin (scripts/install-deps)" >&2
    exit 64
fi

flags=(--bind-to none)
[[ $(id -u) -eq 0 ]] && flags+=(--allow-run-as-root)
cores=$(nproc)
(( nprocs > cores )) && flags+=(--oversubscribe)

exec "$here/supervise.sh" mpirun -np "$nprocs" "${flags[@]}" "$bin" train "$recipe" "$@"

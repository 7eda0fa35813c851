#!/usr/bin/env bash
# Runs deeptrain with mpirun across the nodes of the simulated cluster
# (launch/virtual-cluster.sh up N): RANKS_PER_NODE ranks on each node, over TCP between nodes
# and shared memory within one, as on a real cluster (docs/multinode.md).
#
#   launch/cluster.sh RANKS_PER_NODE RECIPE [train options...]   deeptrain train RECIPE ...
#   launch/cluster.sh RANKS_PER_NODE -- ARGS...                  deeptrain ARGS... (e.g. bench comm)
#
#   launch/virtual-cluster.sh up 2 1gbit
#   launch/cluster.sh 1 recipes/tiny-pretrain.yaml --set threads=1     # dp 2, one rank a node
#
# Every node of the cluster is used (CLUSTER_NODES=K: the first K). Ranks fill node 0 first,
# then node 1, ... (world ranks 0..R-1 on dt-node0). mpirun runs in the hub namespace (dt-hub),
# which reaches every node and is none of them, and starts each node's orted through
# launch/netns-rsh. Ranks are not bound (the nodes share this machine's cores); give the
# recipe `threads` so that the ranks do not oversubscribe the cores.
# Exit codes are deeptrain's: 0 done, 1 bad input, 3 runtime failure or a lost rank, 64 usage
# (also: no cluster up, no binary, no mpirun). mpirun runs under launch/supervise.sh, which ends
# it once a rank has reported a lost peer (parallel.timeout).
set -uo pipefail

usage() {
    echo "usage: launch/cluster.sh RANKS_PER_NODE RECIPE [deeptrain train options...]" >&2
    echo "       launch/cluster.sh RANKS_PER_NODE -- DEEPTRAIN_ARGS..." >&2
    exit 64
}
[[ $# -ge 2 && $1 =~ ^[0-9]+$ && $((10#$1)) -ge 1 ]] || usage
per_node=$((10#$1))
shift
if [[ $1 == -- ]]; then
    shift
    [[ $# -ge 1 ]] || usage
    args=("$@")
else
    args=(train "$@")
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${DEEPTRAIN:-$here/../.build/release/deeptrain}
if [[ ! -x $bin ]]; then
    echo "error: $bin not found; build it first (make build)" >&2
    exit 64
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
if ! command -v mpirun > /dev/null; then
    echo "error: mpirun not found; install openmpi-bin (scripts/install-deps)" >&2
    exit 64
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "error: the simulated cluster needs root (network namespaces)" >&2
    exit 64
fi
mapfile -t nodes < <(ip netns list 2> /dev/null | awk '{print $1}' | grep -E '^dt-node[0-9]+$' | sort -V)
if [[ -n ${CLUSTER_NODES:-} ]]; then
    [[ $CLUSTER_NODES =~ ^[0-9]+$ && $CLUSTER_NODES -ge 1 && $CLUSTER_NODES -le ${#nodes[@]} ]] || {
        echo "error: CLUSTER_NODES=$CLUSTER_NODES but ${#nodes[@]} nodes are up" >&2
        exit 64
    }
    nodes=("${nodes[@]:0:CLUSTER_NODES}")
fi
if [[ ${#nodes[@]} -eq 0 ]] || ! ip netns list | awk '{print $1}' | grep -qx dt-hub; then
    echo "error: no simulated cluster is up; start one with launch/virtual-cluster.sh up N [RATE]" >&2
    exit 64
fi

hostfile=$(mktemp /tmp/dt-cluster-hosts.XXXXXX)
trap 'rm -f "$hostfile"' EXIT
for n in "${nodes[@]}"; do echo "$n slots=$per_node"; done > "$hostfile"
nprocs=$((per_node * ${#nodes[@]}))

# TCP between nodes, shared memory (vader) within one; both of Open MPI's channels (the
# runtime's oob and the MPI btl) kept on the cluster's subnet.
"$here/supervise.sh" ip netns exec dt-hub mpirun -np "$nprocs" --hostfile "$hostfile" \
    --allow-run-as-root --oversubscribe --bind-to none \
    --mca plm_rsh_agent "$here/netns-rsh" \
    --mca btl self,vader,tcp \
    --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
    "$bin" "${args[@]}"

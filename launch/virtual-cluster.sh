#!/usr/bin/env bash
# A simulated cluster on this machine: N "nodes", each a network namespace with its own address
# and host name, joined by a bridge, each link optionally limited by a token bucket (tc tbf).
# launch/cluster.sh runs deeptrain across them with mpirun over TCP (docs/multinode.md).
#
#   launch/virtual-cluster.sh up N [RATE]   N nodes, each link limited to RATE (e.g. 1gbit,
#                                           500mbit, 10gbit; none or omitted = unlimited)
#   launch/virtual-cluster.sh down          kills what runs in the namespaces, removes them all
#   launch/virtual-cluster.sh status        the nodes, their addresses, rates and processes
#
# What `up` builds (every step idempotent; `up` again with another N or RATE adjusts it):
#   dt-hub                 a namespace holding the bridge dt-br0 (10.77.0.254/24) and nothing
#                          else; launch/cluster.sh runs mpirun here, so no node is "local"
#   dt-node0..dt-node{N-1} a namespace per node: lo, and eth0 = 10.77.0.{i+1}/24, one end of a
#                          veth pair whose other end (dt-vI) is a port of dt-br0
#   /etc/hosts             "10.77.0.{i+1} dt-nodeI", each line marked "# deeptrain virtual-cluster"
#   sysctl                 net.ipv4.tcp_slow_start_after_idle=0 in each node
#   tc tbf                 at RATE on both ends of each node's veth: the node's upload (eth0's
#                          egress) and its download (dt-vI's egress)
# Nothing is added to the root namespace's interfaces, routes or firewall. The namespaces share
# the machine's cores, memory and file system; the kernel has no netem here, so no latency is
# added beyond the veth's own (tens of microseconds).
#
# Exit codes: 0 done, 1 not root or network namespaces unavailable (says which), 64 usage.
set -uo pipefail

readonly prefix=10.77.0
readonly hub=dt-hub
readonly bridge=dt-br0
readonly mark="# deeptrain virtual-cluster"
readonly max_nodes=64

usage() {
    echo "usage: launch/virtual-cluster.sh up N [RATE] | down | status" >&2
    echo "  N: 1..$max_nodes nodes; RATE: a tc rate such as 1gbit, 500mbit, 10gbit, or none" >&2
    exit 64
}

die() { echo "virtual-cluster: error: $*" >&2; exit 1; }

# The namespaces this script made, hub last.
node_namespaces() { ip netns list 2> /dev/null | awk '{print $1}' | grep -E '^dt-node[0-9]+$' | sort -V; }

# The rate in bits per second, for the bucket size; tc's own units (bit, kbit, mbit, gbit, tbit).
rate_bits() {
    local r=${1,,}
    [[ $r =~ ^([0-9]+)(bit|kbit|mbit|gbit|tbit)$ ]] || return 1
    local n=${BASH_REMATCH[1]}
    case ${BASH_REMATCH[2]} in
        bit) echo "$n" ;; kbit) echo $((n * 1000)) ;; mbit) echo $((n * 1000000)) ;;
        gbit) echo $((n * 1000000000)) ;; tbit) echo $((n * 1000000000000)) ;;
    esac
}

require_root_and_netns() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces and tc need CAP_NET_ADMIN)"
    command -v ip > /dev/null || die "'ip' not found: install iproute2 (scripts/install-deps)"
    command -v tc > /dev/null || die "'tc' not found: install iproute2 (scripts/install-deps)"
    ip netns list > /dev/null 2>&1 || die "'ip netns' is unavailable on this system"
}

# Kills every process in a namespace (the deeptrain ranks, orted, a stuck mpirun), TERM first.
kill_namespace_processes() {
    local ns=$1 pids
    pids=$(ip netns pids "$ns" 2> /dev/null | tr '\n' ' ')
    [[ -z ${pids// } ]] && return 0
    echo "virtual-cluster: $ns: stopping processes $pids" >&2
    # shellcheck disable=SC2086
    kill -TERM $pids 2> /dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        pids=$(ip netns pids "$ns" 2> /dev/null | tr '\n' ' ')
        [[ -z ${pids// } ]] && return 0
        sleep 0.3
    done
    # shellcheck disable=SC2086
    kill -KILL $pids 2> /dev/null
    sleep 0.2
}

remove_node() {
    local ns=$1 i=${1#dt-node}
    kill_namespace_processes "$ns"
    ip -n "$hub" link del "dt-v$i" 2> /dev/null   # also removes the peer in the node
    ip netns del "$ns" 2> /dev/null || echo "virtual-cluster: warning: could not delete $ns" >&2
}

# Rewrites /etc/hosts without our lines, then with those given (in place: /etc/hosts may be a
# bind mount that cannot be renamed over).
write_hosts() {
    local kept
    kept=$(grep -vF "$mark" /etc/hosts)
    {
        [[ -n $kept ]] && printf '%s\n' "$kept"
        for line in "$@"; do printf '%s %s\n' "$line" "$mark"; done
    } > /tmp/.dt-hosts.$$
    cat /tmp/.dt-hosts.$$ > /etc/hosts
    rm -f /tmp/.dt-hosts.$$
}

# tbf on one interface: the rate, a bucket of 10 ms at that rate (at least 64 KiB, so a
# segmentation-offloaded packet fits), 50 ms of queue.
limit_link() {
    local ns=$1 dev=$2 rate=$3
    if [[ $rate == none ]]; then
        ip netns exec "$ns" tc qdisc del dev "$dev" root 2> /dev/null
        return 0
    fi
    local bits burst
    bits=$(rate_bits "$rate")
    burst=$((bits / 8 / 100))
    ((burst < 65536)) && burst=65536
    ip netns exec "$ns" tc qdisc replace dev "$dev" root tbf rate "$rate" burst "$burst" latency 50ms ||
        die "tc tbf on $ns/$dev failed (is the sch_tbf module available?)"
}

up() {
    local n=$1 rate=$2
    # The hub and its bridge.
    if ! ip netns list | awk '{print $1}' | grep -qx "$hub"; then
        ip netns add "$hub" || die "'ip netns add $hub' failed: network namespaces are unavailable here"
    fi
    ip -n "$hub" link set lo up
    if ! ip -n "$hub" link show "$bridge" > /dev/null 2>&1; then
        ip -n "$hub" link add "$bridge" type bridge || die "cannot create the bridge $bridge in $hub"
    fi
    ip -n "$hub" addr replace "$prefix.254/24" dev "$bridge"
    ip -n "$hub" link set "$bridge" up

    # Nodes beyond N from an earlier `up`.
    local ns
    for ns in $(node_namespaces); do
        ((${ns#dt-node} >= n)) && remove_node "$ns"
    done

    local i hosts=()
    for ((i = 0; i < n; i++)); do
        ns=dt-node$i
        if ! ip netns list | awk '{print $1}' | grep -qx "$ns"; then
            ip netns add "$ns" || die "'ip netns add $ns' failed"
        fi
        ip -n "$ns" link set lo up
        if ! ip -n "$hub" link show "dt-v$i" > /dev/null 2>&1; then
            ip -n "$ns" link del eth0 2> /dev/null
            ip -n "$hub" link add "dt-v$i" type veth peer name eth0 netns "$ns" || die "cannot create the veth pair of $ns"
        fi
        ip -n "$hub" link set "dt-v$i" master "$bridge" up
        ip -n "$ns" addr replace "$prefix.$((i + 1))/24" dev eth0
        ip -n "$ns" link set eth0 up
        # As on a training cluster's hosts: a connection idle between two steps keeps its
        # congestion window instead of starting slow again (docs/multinode.md, "TCP").
        ip netns exec "$ns" sysctl -q -w net.ipv4.tcp_slow_start_after_idle=0 > /dev/null ||
            echo "virtual-cluster: warning: cannot set tcp_slow_start_after_idle in $ns" >&2
        limit_link "$ns" eth0 "$rate"
        limit_link "$hub" "dt-v$i" "$rate"
        hosts+=("$prefix.$((i + 1)) $ns")
    done
    write_hosts "${hosts[@]}"

    # Every node's link is up (and, where ping exists, reaches the bridge).
    for ((i = 0; i < n; i++)); do
        ip -n dt-node$i link show eth0 | grep -q 'LOWER_UP' || die "dt-node$i: eth0 has no carrier"
        if command -v ping > /dev/null; then
            ip netns exec dt-node$i ping -c 1 -W 2 "$prefix.254" > /dev/null 2>&1 ||
                die "dt-node$i cannot reach the bridge at $prefix.254"
        fi
    done
    echo "virtual-cluster: up: $n nodes dt-node0..dt-node$((n - 1)) on $prefix.0/24, links ${rate/none/unlimited}"
}

down() {
    local ns
    for ns in $(node_namespaces); do remove_node "$ns"; done
    if ip netns list | awk '{print $1}' | grep -qx "$hub"; then
        kill_namespace_processes "$hub"
        ip netns del "$hub" 2> /dev/null || echo "virtual-cluster: warning: could not delete $hub" >&2
    fi
    grep -qF "$mark" /etc/hosts && write_hosts
    echo "virtual-cluster: down"
}

status() {
    local nodes
    nodes=$(node_namespaces)
    if [[ -z $nodes ]]; then
        echo "virtual-cluster: down (no dt-node namespaces)"
        return 0
    fi
    local ns
    for ns in $nodes; do
        local addr qdisc pids
        addr=$(ip -n "$ns" -4 -o addr show dev eth0 2> /dev/null | awk '{print $4}')
        qdisc=$(ip netns exec "$ns" tc qdisc show dev eth0 2> /dev/null | grep -o 'tbf.*rate [^ ]*' | awk '{print $NF}')
        pids=$(ip netns pids "$ns" 2> /dev/null | xargs -r ps -o comm= -p 2> /dev/null | sort | uniq -c | awk '{printf "%s×%s ", $2, $1}')
        printf '%-9s %-14s rate %-9s processes: %s\n' "$ns" "${addr:-?}" "${qdisc:-unlimited}" "${pids:-none}"
    done
    grep -F "$mark" /etc/hosts | sed 's/^/\/etc\/hosts: /'
}

[[ $# -ge 1 ]] || usage
case $1 in
    up)
        [[ $# -ge 2 && $# -le 3 && $2 =~ ^[0-9]+$ ]] || usage
        n=$((10#$2))
        ((n >= 1 && n <= max_nodes)) || usage
        rate=${3:-none}
        rate=${rate,,}
        if [[ $rate != none ]]; then
            rate_bits "$rate" > /dev/null || { echo "virtual-cluster: bad RATE '$3': use e.g. 1gbit, 500mbit, 10gbit or none" >&2; exit 64; }
        fi
        require_root_and_netns
        up "$n" "$rate"
        ;;
    down)
        [[ $# -eq 1 ]] || usage
        require_root_and_netns
        down
        ;;
    status)
        [[ $# -eq 1 ]] || usage
        require_root_and_netns
        status
        ;;
    *) usage ;;
esac

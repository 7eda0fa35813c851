#!/usr/bin/env bash
# Runs an mpirun command line and makes sure it ends once a rank has reported a lost peer.
#
#   launch/supervise.sh mpirun -np 16 --hostfile hosts deeptrain train recipe.yaml
#
# A rank that stops hearing from a peer (parallel.timeout: a cut link, a dead or frozen node,
# a stopped process) prints `error: rank R of N (host H): lost rank P (host Q): ...` and ends
# its node's part of the job (docs/multinode.md). Open MPI 4's mpirun then tries to have the
# lost node's daemon kill its ranks and waits for the answer, which a cut link never brings:
# it would wait for ever (and crashes on SIGTERM). This script copies mpirun's stderr through,
# and when such a line has appeared and mpirun is still there GRACE seconds later
# (DEEPTRAIN_LOST_GRACE, default 10), kills it.
#
# Exit codes: mpirun's 0, 1 (bad input), 3 (runtime failure) and 64 (usage) pass through; a
# lost rank, or any other mpirun code (a rank killed by a signal), is 3. After Ctrl-C or a
# SIGTERM (scancel) the ranks write a checkpoint and exit 0, but mpirun, which stopped the job,
# returns 1: then, unless a rank said `error:` or mpirun reported a failed rank, the exit code
# is 0 (docs/design.md §2.2). launch/local.sh and launch/cluster.sh run their mpirun through
# this script.
set -uo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: launch/supervise.sh MPIRUN_COMMAND..." >&2
    exit 64
fi
grace=${DEEPTRAIN_LOST_GRACE:-10}
[[ $grace =~ ^[0-9]+$ ]] || { echo "error: DEEPTRAIN_LOST_GRACE=$grace is not a number of seconds" >&2; exit 64; }

work=$(mktemp -d /tmp/dt-supervise.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkfifo "$work/stderr"

# mpirun gets the terminal's SIGINT itself (and forwards a stop to the ranks); this script
# only remembers that the stop was asked for.
interrupted=0
trap 'interrupted=1' INT TERM

"$@" 2> "$work/stderr" &
job=$!
# Each line to our stderr as it comes; the first lost-peer line leaves its time in a file.
while IFS= read -r line || [[ -n $line ]]; do
    printf '%s\n' "$line" >&2
    if [[ $line == *"): lost rank"* && ! -e $work/lost ]]; then
        date +%s > "$work/lost"
    fi
    if [[ $line == error:* || $line == *"non-zero status"* || $line == *"exited on signal"* ]]; then
        : > "$work/failed"
    fi
done < "$work/stderr" &
reader=$!

killed=0
while kill -0 "$job" 2> /dev/null; do
    if [[ -e $work/lost ]] && (($(date +%s) - $(< "$work/lost") >= grace)); then
        echo "error: mpirun still runs ${grace} s after a rank was lost (Open MPI waits for the lost node's daemon); ending it" >&2
        kill -KILL "$job" 2> /dev/null
        killed=1
        break
    fi
    sleep 1
done
# A trapped signal cuts `wait` short: wait again until mpirun is gone.
while :; do
    { wait "$job"; } 2> /dev/null
    rc=$?
    kill -0 "$job" 2> /dev/null || break
done
# A daemon left on a lost node may hold the pipe open: stop copying after 5 s.
for _ in 1 2 3 4 5 6 7 8 9 10; do
    kill -0 "$reader" 2> /dev/null || break
    sleep 0.5
done
kill "$reader" 2> /dev/null
wait "$reader" 2> /dev/null

if [[ -e $work/lost ]]; then
    exit 3
fi
if ((interrupted && rc == 1)) && [[ ! -e $work/failed ]]; then
    exit 0
fi
if ((killed == 0 && rc > 3 && rc != 64)); then
    echo "error: the job ended with mpirun exit code $rc: a rank was lost (killed or crashed; mpirun's message above names it)" >&2
    exit 3
fi
exit $rc

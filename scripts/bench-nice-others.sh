#!/usr/bin/env bash
# Sets the autogroup nice value of every process group that exists now (other sessions' builds and
# tests on a shared machine) to $1 (e.g. 12 before a benchmark, 0 after). Programs started afterwards
# in their own session (setsid, as the bench scripts do) get a fresh autogroup at nice 0, so they
# are measured with most of the machine while the rest keeps running slowly. Nothing is stopped.
# Needs root (or the processes' owner) and kernel.sched_autogroup_enabled=1.
set -u
nice=${1:?usage: bench-nice-others.sh NICE}
for p in /proc/[0-9]*; do echo "$nice" >"$p/autogroup" 2>/dev/null; done
true

#!/usr/bin/env bash
# Cargo runner for the QEMU boards: boots an ELF on an emulated Cortex-M and decodes its defmt
# log (written over semihosting) with defmt-print. The firmware ends QEMU through semihosting
# with its exit code (0: passed, 1: failure, panic or fault), and `pipefail` makes that the
# runner's exit code; a run longer than QEMU_TIMEOUT seconds (default 60) ends with 124.
#
# usage: qemu-run.sh MACHINE CPU ELF   (in .cargo/config.toml: runner = "../qemu-run.sh M C")
# QEMU_EXTRA adds QEMU options, e.g. QEMU_EXTRA="-icount shift=0" to count instructions.
# QEMU reads nothing: stdin is /dev/null, so a terminal is never left in raw mode (-nographic
# would otherwise take it over, and a run ended by the timeout could not restore it).
set -euo pipefail
if [ $# -ne 3 ]; then
    echo "usage: $0 MACHINE CPU ELF" >&2
    exit 2
fi
machine=$1 cpu=$2 elf=$3
# shellcheck disable=SC2086 # QEMU_EXTRA is a list of options
timeout "${QEMU_TIMEOUT:-60}" qemu-system-arm -machine "$machine" -cpu "$cpu" -nographic \
    -semihosting-config enable=on,target=native ${QEMU_EXTRA:-} -kernel "$elf" </dev/null |
    defmt-print -e "$elf"

#!/usr/bin/env bash
# Full test run: unit + integration tests (cargo test --release, in-process clusters
# included, and tests/layering.rs: the floors of src/lib.rs and no import circle), then the slixmpp interop suite (scripts/interop.sh), the sipp suite
# (scripts/sipp.sh), the MOE-MP suite (scripts/moe.sh), a smoke run of the load generator
# (scripts/loadgen-smoke.sh) and the multi-host cluster tests in network namespaces
# (scripts/netns-cluster.sh, netns-data.sh, netns-scale.sh with --test; need root), every
# simulation scenario (scripts/sim-check.sh) and a short replay against a 3-node cluster in
# network namespaces (scripts/netns-replay.sh --test).
# Runnable from any directory on a fresh Debian.
#
# Installs what is missing: python3-venv (apt-get, only when `python3 -m venv` fails), a
# pinned slixmpp in <repo>/.venv-interop (reused when it already has the pinned version),
# sip-tester (sipp) and iproute2 from Debian.
# The last line printed is the tally (slixmpp + sipp + moe + loadgen + netns + sim) `N passed, M failed`; the
# exit status is non-zero when cargo test or any interop scenario failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-interop"
SLIXMPP_VERSION="1.17.0"
# slixmpp and its dependency closure, pinned (all install as wheels on CPython 3.11-3.13).
PINS=(
    "slixmpp==$SLIXMPP_VERSION"
    "aiodns==4.0.4"
    "pycares==5.2.1"
    "cffi==2.1.1"
    "pycparser==3.12"
    "pyasn1==0.6.5"
    "pyasn1-modules==0.4.2"
)

say() { printf '== %s\n' "$*" >&2; }
INTEROP_SCENARIOS=37 # 8 slixmpp (a-h) + 12 sipp + 17 moe; all count as failed when setup fails
die() {
    printf 'test.sh: %s\n' "$*" >&2
    echo "0 passed, $INTEROP_SCENARIOS failed"
    exit 1
}

if [[ "$(id -u)" -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null; then
    SUDO=(sudo)
else
    SUDO=(no-sudo)
fi
APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found; install $* by hand"
    [[ "${SUDO[*]}" != no-sudo ]] || die "not root and no sudo; install $* by hand"
    if [[ $APT_UPDATED -eq 0 ]]; then
        "${SUDO[@]}" apt-get update -qq
        APT_UPDATED=1
    fi
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@"
}

# ---------------------------------------------------------------------------- toolchain
command -v cargo >/dev/null || die "cargo not found (install Rust: https://rustup.rs)"
command -v python3 >/dev/null || apt_install python3
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "python3 >= 3.11 is needed for slixmpp $SLIXMPP_VERSION (found $(python3 -V 2>&1))"
command -v sipp >/dev/null || apt_install sip-tester
command -v ip >/dev/null || apt_install iproute2 # network namespaces of netns-cluster.sh

venv_ok() {
    [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" - "$SLIXMPP_VERSION" <<'EOF' 2>/dev/null
import importlib.metadata as md, sys
import slixmpp  # noqa: F401  (the venv's python and wheels still work)
sys.exit(md.version("slixmpp") != sys.argv[1])
EOF
}

if venv_ok; then
    say "reusing $VENV (slixmpp $SLIXMPP_VERSION)"
else
    say "creating $VENV with slixmpp $SLIXMPP_VERSION"
    probe="$(mktemp -d)"
    if ! python3 -m venv "$probe/v" >/dev/null 2>&1; then
        say "python3 -m venv does not work; installing python3-venv"
        apt_install python3-venv
    fi
    rm -rf "$probe" "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --prefer-binary "${PINS[@]}"
    venv_ok || die "slixmpp $SLIXMPP_VERSION did not install into $VENV"
fi

# ---------------------------------------------------------------------------- tests
cd "$ROOT"
cargo_status=0
say "cargo test --release"
cargo test --release || cargo_status=$?

say "scripts/interop.sh"
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
interop_status=0
INTEROP_PYTHON="$VENV/bin/python" INTEROP_RESULTS="$results" \
    bash "$ROOT/scripts/interop.sh" || interop_status=$?

passed=$(grep -c '^PASS' "$results" || true)
failed=$(grep -c '^FAIL' "$results" || true)
if [[ $interop_status -ne 0 && $failed -eq 0 ]]; then
    failed=1 # interop.sh failed without reporting scenarios (should not happen)
fi

# Runs one suite that reports `PASS|FAIL` lines into the file named by its <PREFIX>_RESULTS
# variable; adds its counts to the tally and sets suites_ok=0 when it failed.
suites_ok=1
run_suite() { # script PREFIX [args...]
    local script="$1" prefix="$2" out status=0 p f
    shift 2
    say "scripts/$script $*"
    out="$(mktemp)"
    env "${prefix}_NODE_BIN=$ROOT/target/release/rendezvous" "${prefix}_PYTHON=$VENV/bin/python" \
        "RENDEZVOUS_BIN=$ROOT/target/release/rendezvous" \
        "${prefix}_RESULTS=$out" bash "$ROOT/scripts/$script" "$@" || status=$?
    p=$(grep -c '^PASS' "$out" || true)
    f=$(grep -c '^FAIL' "$out" || true)
    rm -f "$out"
    [[ $status -eq 0 || $f -gt 0 ]] || f=1 # failed without reporting scenarios
    ((status == 0)) || suites_ok=0
    passed=$((passed + p))
    failed=$((failed + f))
}
run_suite sipp.sh SIPP
run_suite moe.sh MOE
run_suite loadgen-smoke.sh LOADGEN
run_suite netns-cluster.sh NETNS --test
run_suite netns-data.sh NETNS --test
run_suite netns-scale.sh NETNS --test
run_suite sim-check.sh SIM
run_suite netns-replay.sh NETNS --test
echo
if [[ $cargo_status -ne 0 ]]; then
    echo "cargo test --release: FAILED (exit $cargo_status)"
else
    echo "cargo test --release: ok"
fi
echo "$passed passed, $failed failed"
[[ $cargo_status -eq 0 && $interop_status -eq 0 && $suites_ok -eq 1 && $failed -eq 0 ]]

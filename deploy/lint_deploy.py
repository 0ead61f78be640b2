"""Checks of deploy/ that no schema expresses (run by lint.sh).

Schemas say whether each file is well formed; this says whether the files
fit together and fit RESCUE MATE: every mounted file and build input
exists, every named volume and dependency is declared, the Kubernetes
ConfigMap carries the same configuration as compose.toml, every TOML file
parses, and each access token is a well-formed hash with a known role.

Prints one line per problem, naming the file, and exits 1 if there is any.
"""

import re
import sys
import tomllib
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
ROLES = {"control", "field", "drill"}
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Commands of the rescuemate binary that the deploy files use.
COMMANDS = {"serve", "gateway", "sim", "replay", "export", "demo", "bench"}

problems = []


def problem(path, text):
    problems.append(f"{path.relative_to(ROOT)}: {text}")


def check_config(path, config):
    """The parts of a server config that a typo would make wrong silently."""
    tokens = config.get("auth", {}).get("tokens", [])
    names = set()
    for i, token in enumerate(tokens):
        where = f"[[auth.tokens]] #{i + 1}"
        name = token.get("name")
        if not name:
            problem(path, f"{where} has no name")
        elif name in names:
            problem(path, f"{where}: name {name!r} is used twice")
        names.add(name)
        if token.get("role") not in ROLES:
            problem(path, f"{where}: role {token.get('role')!r} is none of {sorted(ROLES)}")
        if not SHA256_HEX.fullmatch(str(token.get("sha256", ""))):
            problem(path, f"{where}: sha256 is not 64 lower-case hex digits")
        area = token.get("area")
        if area is not None and (len(area) != 4 or not (area[0] < area[2] and area[1] < area[3])):
            problem(path, f"{where}: area is not [west, south, east, north]")
    listen = config.get("http", {}).get("listen", "127.0.0.1:8080")
    if not listen.startswith(("127.", "[::1]")) and not tokens:
        problem(path, f"http.listen {listen} is not loopback, so tokens are required (protected mode)")


def check_toml_files():
    for path in sorted(DEPLOY.glob("*.toml")):
        try:
            check_config(path, tomllib.loads(path.read_text()))
        except tomllib.TOMLDecodeError as e:
            problem(path, f"TOML: {e}")


def load_yaml(path):
    try:
        return list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as e:
        problem(path, f"YAML: {e}")
        return []


def check_compose(path):
    (doc,) = load_yaml(path) or [None]
    if not isinstance(doc, dict):
        return
    services = doc.get("services", {})
    volumes = set(doc.get("volumes") or {})
    networks = set(doc.get("networks") or {}) | {"default"}
    built = {s.get("image") for s in services.values() if "build" in s}
    for name, service in services.items():
        where = f"service {name}"
        build = service.get("build")
        if build:
            context = (path.parent / build.get("context", ".")).resolve()
            if not (context / build.get("dockerfile", "Dockerfile")).is_file():
                problem(path, f"{where}: build file {build.get('dockerfile')} not found in {context}")
        elif service.get("pull_policy") == "never" and service.get("image") not in built:
            problem(path, f"{where}: image {service.get('image')} is never pulled and no service builds it")
        for mount in service.get("volumes", []):
            source = mount.split(":")[0] if isinstance(mount, str) else mount.get("source", "")
            if source.startswith((".", "/")):
                if not (path.parent / source).exists():
                    problem(path, f"{where}: mounted file {source} does not exist")
            elif source not in volumes:
                problem(path, f"{where}: volume {source!r} is not declared under volumes:")
        for dep in service.get("depends_on", {}):
            if dep not in services:
                problem(path, f"{where}: depends on unknown service {dep!r}")
        nets = service.get("networks", [])
        for net in nets if isinstance(nets, list) else nets.keys():
            if net not in networks:
                problem(path, f"{where}: network {net!r} is not declared")
        check_command(path, where, service)


def check_command(path, where, spec):
    """A rescuemate command line: a known command, and its --config mounted."""
    image = str(spec.get("image", ""))
    args = spec.get("command") or spec.get("args")
    if "rescuemate" not in image or not args:
        return
    if args[0] not in COMMANDS:
        problem(path, f"{where}: {args[0]!r} is not a rescuemate command")
    if "--config" in args:
        config = args[args.index("--config") + 1]
        mounts = [m.split(":")[1] if isinstance(m, str) else m.get("mountPath", "")
                  for m in spec.get("volumes", spec.get("volumeMounts", []))]
        if not any(config == m or config.startswith(m.rstrip("/") + "/") for m in mounts):
            problem(path, f"{where}: --config {config} is not mounted into the container")


def check_k8s():
    k8s = DEPLOY / "k8s"
    configmap_toml = None
    for path in sorted(k8s.glob("*.yaml")):
        for doc in load_yaml(path):
            if not isinstance(doc, dict):
                continue
            kind = doc.get("kind")
            if kind == "ConfigMap" and "rescuemate.toml" in doc.get("data", {}):
                configmap_toml = (path, doc["data"]["rescuemate.toml"])
            if kind == "Kustomization":
                listed = set(doc.get("resources", []))
                present = {p.name for p in k8s.glob("*.yaml")} - {path.name}
                for missing in sorted(listed - present):
                    problem(path, f"resource {missing} does not exist")
                for unlisted in sorted(present - listed):
                    problem(path, f"{unlisted} is not listed under resources:")
            if kind in ("Deployment", "StatefulSet"):
                pod = doc["spec"]["template"]["spec"]
                for c in pod.get("containers", []):
                    spec = dict(c, volumes=c.get("volumeMounts", []))
                    check_command(path, f"{kind} {doc['metadata']['name']}", spec)
                    security = c.get("securityContext", {})
                    if security.get("allowPrivilegeEscalation") is not False:
                        problem(path, f"{kind} {doc['metadata']['name']}: allowPrivilegeEscalation is not false")
                    if "resources" not in c:
                        problem(path, f"{kind} {doc['metadata']['name']}: no resource requests/limits")
                if pod.get("securityContext", {}).get("runAsNonRoot") is not True:
                    problem(path, f"{kind} {doc['metadata']['name']}: runAsNonRoot is not true")
    if configmap_toml is None:
        problem(k8s, "no ConfigMap holds rescuemate.toml")
        return
    path, text = configmap_toml
    if text != (DEPLOY / "compose.toml").read_text():
        problem(path, "rescuemate.toml differs from deploy/compose.toml (keep them the same)")
    try:
        check_config(path, tomllib.loads(text))
    except tomllib.TOMLDecodeError as e:
        problem(path, f"embedded rescuemate.toml: {e}")


def check_containerfile():
    path = DEPLOY / "Containerfile"
    for line in path.read_text().splitlines():
        m = re.match(r"COPY\s+(?!--from)(\S+)\s+\S+", line)
        if m and m.group(1) != "." and not (ROOT / m.group(1)).exists():
            problem(path, f"COPY source {m.group(1)} does not exist")


def main():
    check_toml_files()
    for path in sorted(DEPLOY.glob("compose*.yaml")):
        check_compose(path)
    check_k8s()
    check_containerfile()
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

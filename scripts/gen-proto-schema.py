#!/usr/bin/env python3
"""Generate src/api/protobuf/schema.rs: the wire-to-JSON schema of every Kubernetes kind.

The protobuf decoder in src/api/protobuf/ walks request bodies with this table. Three
sources are joined, each for the part it is authoritative on:

  * k8s-pb (prost output of the upstream generated.proto files): field tags and wire types.
  * the Go API types (kubernetes/api, apimachinery, apiextensions-apiserver, kube-aggregator
    at the release tag): JSON names plus what Go's encoding/json does with an unset field
    (pointer or value, omitempty, omitzero, inline). Go's gogo marshaller writes every
    non-pointer field even when it is zero, so wire presence alone cannot tell `replicas: 0`
    (a pointer, must be kept) from `generation: 0` (a value with omitempty, must be dropped).
  * k8s-openapi: the set of top-level kinds (its `Resource` impls) and a cross-check of every
    JSON name.

Only messages reachable from a top-level kind (plus meta/v1 DeleteOptions) are emitted.

Usage (from the repository root):
    d=/tmp/k8s-go && mkdir -p $d && for r in api apimachinery apiextensions-apiserver kube-aggregator; do
        git clone -q --depth 1 --branch v0.35.0 https://github.com/kubernetes/$r $d/$r; done
    (cargo fetch in any crate depending on k8s-pb 0.9 and k8s-openapi 0.29)
    python3 scripts/gen-proto-schema.py --go-src $d > src/api/protobuf/schema.rs

--k8s-pb and --k8s-openapi default to the crates in ~/.cargo/registry.
"""

import argparse
import glob
import os
import re
import subprocess
import sys
from collections import OrderedDict

GO_TAG = "v0.35.0"
OPENAPI_FEATURE = "v1_35"

# Messages whose JSON form is not an object of their fields (custom MarshalJSON in Go).
SPECIALS = {
    "apimachinery.pkg.apis.meta.v1.Time": "Time",
    "apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime",
    "apimachinery.pkg.apis.meta.v1.Duration": "Duration",  # not reachable in 1.35: no decoder
    "apimachinery.pkg.api.resource.Quantity": "Quantity",
    "apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    "apimachinery.pkg.runtime.RawExtension": "RawJson",
    "apimachinery.pkg.apis.meta.v1.FieldsV1": "RawJson",
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSON": "RawJson",
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray": "SchemaOrArray",
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool": "SchemaOrBool",
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray": "SchemaOrStringArray",
}
UNSUPPORTED_SPECIALS = {"Duration"}
SPECIALS_LOWER = {k.lower(): v for k, v in SPECIALS.items()}
DELETE_OPTIONS = "apimachinery.pkg.apis.meta.v1.DeleteOptions"

SCALARS = {"string": "Str", "bytes": "Bytes", "bool": "Bool", "int32": "I32", "int64": "I64", "double": "F64"}

FLAG_POINTER, FLAG_OMITEMPTY, FLAG_OMITZERO, FLAG_INLINE = 1, 2, 4, 8


def warn(msg):
    print("gen-proto-schema: " + msg, file=sys.stderr)


def registry_crate(name):
    hits = sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*/" + name)))
    if not hits:
        sys.exit(f"gen-proto-schema: {name} not found in ~/.cargo/registry; run cargo fetch")
    return hits[-1]


# ---------------------------------------------------------------- k8s-pb (prost output)

class PbField:
    def __init__(self, rust, tag, kind, label, ref):
        self.rust, self.tag, self.kind, self.label, self.ref = rust, tag, kind, label, ref


def resolve_rust_path(module, ty):
    """Turn a prost type (`super::super::x::Y`, `Y`) used in `module` into a dotted key."""
    parts = ty.split("::")
    mod = list(module)
    while parts and parts[0] == "super":
        parts.pop(0)
        mod.pop()
    return ".".join(mod + parts)


def strip_wrappers(ty):
    ty = ty.replace(" ", "")
    for w in ("::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"):
        while ty.startswith(w):
            ty = ty[len(w):-1]
    return ty


def parse_k8s_pb(root):
    messages = {}
    for path in glob.glob(os.path.join(root, "src", "**", "mod.rs"), recursive=True):
        module = os.path.relpath(os.path.dirname(path), os.path.join(root, "src")).split(os.sep)
        lines = open(path, encoding="utf-8").read().split("\n")
        i, current, attr = 0, None, None
        while i < len(lines):
            line = lines[i].strip()
            m = re.match(r"pub struct (\w+) \{(\})?$", line)
            if m:
                current = OrderedDict()
                messages[".".join(module + [m.group(1)])] = current
                if m.group(2):
                    current = None
            elif line == "}":
                current = None
            elif current is not None and line.startswith("#[prost("):
                attr = line
            elif current is not None and attr and line.startswith("pub "):
                m = re.match(r"pub (?:r#)?(\w+):\s*(.*)$", line)
                ty = m.group(2)
                while not (ty.endswith(",") and ty.count("<") == ty.count(">")):
                    i += 1
                    ty += lines[i].strip()
                ty = ty[:-1].replace(",>", ">")
                current[m.group(1)] = parse_prost_field(module, m.group(1), attr, ty)
                attr = None
            i += 1
    return messages


def parse_prost_field(module, rust, attr, ty):
    tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
    body = attr[len("#[prost("):-2]
    m = re.match(r'btree_map = "string, (\w+)"', body)
    if m:
        value = m.group(1)
        ref = None
        if value == "message":
            inner = ty.replace(" ", "")
            inner = inner[inner.index(",") + 1:-1]
            ref = resolve_rust_path(module, inner)
        return PbField(rust, tag, "message" if value == "message" else value, "map", ref)
    kind = body.split(",")[0].split(" ")[0]
    label = "repeated" if "repeated" in body else "single"
    ref = resolve_rust_path(module, strip_wrappers(ty)) if kind == "message" else None
    if kind != "message" and kind not in SCALARS:
        sys.exit(f"gen-proto-schema: unsupported prost type {body!r} for {rust}")
    return PbField(rust, tag, kind, label, ref)


# ---------------------------------------------------------------- Go API types

class GoField:
    def __init__(self, go_name, go_type, json, flags, tag):
        self.go_name, self.go_type, self.json, self.flags, self.tag = go_name, go_type, json, flags, tag


def go_dir_for(key_module, go_root):
    top = key_module[0]
    rest = key_module[1:]
    repo = {"api": "api", "apimachinery": "apimachinery",
            "apiextensions_apiserver": "apiextensions-apiserver",
            "kube_aggregator": "kube-aggregator"}.get(top)
    if repo is None:
        return None
    return os.path.join(go_root, repo, *rest)


_go_cache = {}
GO_MODULES = {"k8s.io/api": "api", "k8s.io/apimachinery": "apimachinery",
              "k8s.io/apiextensions-apiserver": "apiextensions-apiserver",
              "k8s.io/kube-aggregator": "kube-aggregator"}


def parse_go_package(directory, go_root):
    """Struct fields (by lower-cased type name) and the names of slice types in one package.

    A defined type over another package's struct (`type MatchCondition v1.MatchCondition`)
    takes that struct's fields."""
    if directory in _go_cache:
        return _go_cache[directory]
    structs, slices, aliases = {}, set(), {}
    for path in sorted(glob.glob(os.path.join(directory, "*.go"))):
        if path.endswith("_test.go"):
            continue
        current, imports = None, {}
        for raw in open(path, encoding="utf-8"):
            line = raw.rstrip("\n")
            m = re.match(r'^\s*(?:(\w+)\s+)?"(k8s\.io/[^"]+)"', line)
            if m and current is None:
                imports[m.group(1) or m.group(2).rsplit("/", 1)[1]] = m.group(2)
                continue
            m = re.match(r"^type (\w+) struct\s*\{\s*(\})?\s*$", line)
            if m:
                structs[m.group(1).lower()] = []
                current = None if m.group(2) else structs[m.group(1).lower()]
                continue
            m = re.match(r"^type (\w+) \[\]", line)
            if m:
                slices.add(m.group(1).lower())
                continue
            m = re.match(r"^type (\w+) (\w+)\.(\w+)\s*$", line)
            if m:
                aliases[m.group(1).lower()] = (imports.get(m.group(2)), m.group(3))
                continue
            if current is None:
                continue
            if line.startswith("}"):
                current = None
                continue
            s = line.strip()
            if not s or s.startswith("//"):
                continue
            m = re.match(r"^(?:(\w+)\s+)?([^\s`]+)\s+`([^`]*)`", s)
            if not m:
                continue
            go_name, go_type, tags = m.group(1), m.group(2), m.group(3)
            pm = re.search(r'protobuf:"[a-z0-9]+,(\d+)', tags)
            if not pm:
                continue
            jm = re.search(r'json:"([^"]*)"', tags)
            json_tag = jm.group(1) if jm else None
            flags = 0
            if go_type.startswith("*"):
                flags |= FLAG_POINTER
            if json_tag is None:
                json_name = go_name
                if go_name is None:
                    flags |= FLAG_INLINE
            else:
                parts = json_tag.split(",")
                json_name = parts[0]
                if "omitempty" in parts[1:]:
                    flags |= FLAG_OMITEMPTY
                if "omitzero" in parts[1:]:
                    flags |= FLAG_OMITZERO
                if "inline" in parts[1:] or (json_name == "" and go_name is None):
                    flags |= FLAG_INLINE
                if json_name == "-":
                    json_name = None
            current.append(GoField(go_name, go_type, json_name, flags, int(pm.group(1))))
    for name, (imp, target) in aliases.items():
        if name in structs or imp is None:
            continue
        for mod, repo in GO_MODULES.items():
            if imp.startswith(mod + "/"):
                other, _ = parse_go_package(os.path.join(go_root, repo, imp[len(mod) + 1:]), go_root)
                if target.lower() in other:
                    structs[name] = other[target.lower()]
    _go_cache[directory] = (structs, slices)
    return structs, slices


# ---------------------------------------------------------------- k8s-openapi

def parse_openapi(root):
    base = os.path.join(root, "src", OPENAPI_FEATURE)
    types, resources = {}, []
    for path in glob.glob(os.path.join(base, "**", "*.rs"), recursive=True):
        name = os.path.basename(path)
        if name in ("mod.rs", "list.rs"):
            continue
        module = os.path.relpath(os.path.dirname(path), base).split(os.sep)
        text = open(path, encoding="utf-8").read()
        m = re.search(r"^pub (?:struct|enum) (\w+)", text, re.M)
        if not m:
            continue
        # prost and k8s-openapi capitalise acronyms differently (AwsElastic… / AWSElastic…).
        key = ".".join(module + [m.group(1)]).lower()
        types[key] = {j: r for j, r in re.findall(r'"([^"]+)" => Field::Key_(\w+)', text)}
        r = re.search(r'impl crate::Resource for \w+ \{\s*const API_VERSION: &\'static str = "([^"]+)";'
                      r'.*?const KIND: &\'static str = "([^"]+)";', text, re.S)
        if r:
            resources.append((r.group(1), r.group(2), key))
    return types, resources


# ---------------------------------------------------------------- join

class Field:
    def __init__(self, tag, json, kind, label, ref, flags):
        self.tag, self.json, self.kind, self.label, self.ref, self.flags = tag, json, kind, label, ref, flags


def build(pb, go_root, openapi, resources):
    problems = []
    pb_by_lower = {k.lower(): k for k in pb}
    resources = [(av, kind, pb_by_lower.get(key, key)) for av, kind, key in resources]
    roots = [key for _, _, key in resources] + [DELETE_OPTIONS]
    for key in roots:
        if key not in pb:
            sys.exit(f"gen-proto-schema: kind {key} has no protobuf message in k8s-pb")
    order, seen = [], set(roots)
    queue = list(roots)
    while queue:
        key = queue.pop(0)
        order.append(key)
        for f in pb[key].values():
            if f.ref and f.ref not in seen:
                if f.ref not in pb:
                    sys.exit(f"gen-proto-schema: {key}.{f.rust} refers to unknown message {f.ref}")
                seen.add(f.ref)
                queue.append(f.ref)
    order.sort()

    schema = OrderedDict()
    specials = {}
    for key in order:
        module, name = key.split(".")[:-1], key.split(".")[-1]
        gdir = go_dir_for(module, go_root)
        structs, slices = parse_go_package(gdir, go_root) if gdir and os.path.isdir(gdir) else ({}, set())
        special = SPECIALS_LOWER.get(key.lower())
        if special in UNSUPPORTED_SPECIALS:
            sys.exit(f"gen-proto-schema: {key} is now reachable; teach the decoder its JSON form")
        if special is None and name.lower() in slices:
            special = "ListWrapper"
            if [f.tag for f in pb[key].values()] != [1] or next(iter(pb[key].values())).label != "repeated":
                sys.exit(f"gen-proto-schema: list wrapper {key} is not `repeated items = 1`")
        specials[key] = special or "Object"
        by_tag = {f.tag: f for f in pb[key].values()}
        go_fields = structs.get(name.lower())
        fields = []
        if special:
            # Hand-written decoding reads these by tag; names are only for error messages.
            for f in pb[key].values():
                fields.append(Field(f.tag, f.rust, f.kind, f.label, f.ref, FLAG_POINTER | FLAG_OMITEMPTY))
            schema[key] = fields
            continue
        if go_fields is None:
            problems.append(f"{key}: no Go struct found in {gdir}; every field treated as a pointer")
            go_fields = []
        api_names = openapi.get(key.lower())
        used = set()
        for g in go_fields:  # Go declaration order is the order of upstream JSON output
            f = by_tag.get(g.tag)
            if f is None:
                problems.append(f"{key}: Go field {g.go_name} (tag {g.tag}) is not in k8s-pb; not decoded")
                continue
            used.add(g.tag)
            if g.json is None and not g.flags & FLAG_INLINE:
                continue
            if g.flags & FLAG_INLINE and (f.kind != "message" or f.label != "single"):
                sys.exit(f"gen-proto-schema: inline field {key}.{g.go_name} is not a single message")
            fields.append(Field(f.tag, g.json or "", f.kind, f.label, f.ref, g.flags))
        for f in pb[key].values():
            if f.tag in used:
                continue
            # A field newer than the Go types: take its JSON name from k8s-openapi.
            json = None
            if api_names:
                json = next((j for j, r in api_names.items() if r == f.rust), None)
            if json is None:
                problems.append(f"{key}: k8s-pb field {f.rust} (tag {f.tag}) has no JSON name; skipped")
                continue
            problems.append(f"{key}: k8s-pb field {f.rust} not in Go types; JSON name {json} from k8s-openapi")
            fields.append(Field(f.tag, json, f.kind, f.label, f.ref, FLAG_POINTER | FLAG_OMITEMPTY))
        schema[key] = fields

    # Cross-check JSON names against k8s-openapi (inline children count for their parent).
    def json_names(key):
        names = set()
        for f in schema[key]:
            if f.flags & FLAG_INLINE:
                names |= json_names(f.ref)
            else:
                names.add(f.json)
        return names

    checked = 0
    for key, fields in schema.items():
        api_names = openapi.get(key.lower())
        if specials[key] != "Object" or api_names is None:
            continue
        checked += 1
        ours = json_names(key)
        for n in sorted(ours - set(api_names)):
            problems.append(f"{key}: JSON name {n!r} is not known to k8s-openapi")
        for n in sorted(set(api_names) - ours - {"apiVersion", "kind"}):
            problems.append(f"{key}: k8s-openapi field {n!r} is not decoded from protobuf")

    problems.append(f"checked JSON names of {checked} messages against k8s-openapi")
    unmatched = {k for k, v in SPECIALS_LOWER.items() if v not in UNSUPPORTED_SPECIALS} - {k.lower() for k in schema}
    if unmatched:
        problems.append(f"special types not reachable: {sorted(unmatched)}")

    # Zero values of absent value-typed structs are built recursively: that recursion must end.
    def check_acyclic(key, stack):
        if key in stack:
            sys.exit(f"gen-proto-schema: value-struct cycle through {' -> '.join(stack + [key])}")
        if specials[key] != "Object":
            return
        for f in schema[key]:
            if f.kind == "message" and f.label == "single" and not f.flags & FLAG_POINTER:
                check_acyclic(f.ref, stack + [key])

    for key in schema:
        check_acyclic(key, [])
    return schema, specials, problems, resources


# ---------------------------------------------------------------- output

def rust_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def emit(schema, specials, resources, sources):
    keys = list(schema)
    index = {k: i for i, k in enumerate(keys)}
    names = sorted({f.json for fs in schema.values() for f in fs})
    name_index = {n: i for i, n in enumerate(names)}
    out = []
    w = out.append
    w("// @generated by scripts/gen-proto-schema.py — do not edit by hand.")
    w("// Regenerate: see the usage at the top of that script. Sources:")
    for s in sources:
        w(f"//   {s}")
    w("//! Generated schema table: for every message reachable from a Kubernetes kind, its fields")
    w("//! in Go declaration order with tag, JSON name, wire kind, label, message ref and Go flags.")
    w("")
    w("use super::table::{f, m, Field, Kind::*, Label::*, Message, Special::*};")
    w("")
    w(f"pub(super) static NAMES: [&str; {len(names)}] = [")
    for n in names:
        w(f"    {rust_str(n)},")
    w("];")
    w("")
    nfields = sum(len(fs) for fs in schema.values())
    w(f"pub(super) static FIELDS: [Field; {nfields}] = [")
    starts = {}
    pos = 0
    for key in keys:
        starts[key] = pos
        w(f"    // {pos}: {key}")
        for fd in schema[key]:
            kind = "Msg" if fd.kind == "message" else SCALARS[fd.kind]
            label = {"single": "One", "repeated": "Many", "map": "Map"}[fd.label]
            ref = index[fd.ref] if fd.ref else 0
            w(f"    f({fd.tag}, {name_index[fd.json]}, {kind}, {label}, {ref}, {fd.flags}),")
            pos += 1
    w("];")
    w("")
    w(f"pub(super) static MESSAGES: [Message; {len(keys)}] = [")
    for i, key in enumerate(keys):
        n = len(schema[key])
        if n > 255:
            sys.exit(f"gen-proto-schema: {key} has more than 255 fields")
        w(f"    // {i}: {key}")
        w(f"    m({starts[key]}, {n}, {specials[key]}),")
    w("];")
    w("")
    kinds = sorted((av, k, index[key]) for av, k, key in resources)
    w("/// (apiVersion, kind, message), sorted for binary search.")
    w(f"pub(super) static KINDS: [(&str, &str, u16); {len(kinds)}] = [")
    for av, k, i in kinds:
        w(f"    ({rust_str(av)}, {rust_str(k)}, {i}),")
    w("];")
    w("")
    w("/// meta/v1 DeleteOptions, registered in every group version upstream.")
    w(f"pub(super) const DELETE_OPTIONS: u16 = {index[DELETE_OPTIONS]};")
    if max(index.values()) > 65535 or nfields > 65535 or len(names) > 65535:
        sys.exit("gen-proto-schema: table indices overflow u16")
    for fs in schema.values():
        for fd in fs:
            if fd.tag > 65535:
                sys.exit("gen-proto-schema: tag overflows u16")
    return "\n".join(out) + "\n", len(keys), nfields, len(names)


def rustfmt(text):
    """Format like `cargo fmt` would, so regenerating never leaves a formatting diff."""
    try:
        done = subprocess.run(["rustfmt", "--edition", "2021"], input=text, capture_output=True, text=True, check=True)
        return done.stdout
    except (OSError, subprocess.CalledProcessError) as e:
        warn(f"rustfmt failed ({e}); output left unformatted")
        return text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k8s-pb", default=None)
    ap.add_argument("--k8s-openapi", default=None)
    ap.add_argument("--go-src", required=True,
                    help=f"directory holding api/, apimachinery/, apiextensions-apiserver/, kube-aggregator/ at {GO_TAG}")
    ap.add_argument("--strict", action="store_true", help="fail on any cross-check problem")
    args = ap.parse_args()
    pb_root = args.k8s_pb or registry_crate("k8s-pb-0.9.*")
    oa_root = args.k8s_openapi or registry_crate("k8s-openapi-0.29.*")
    pb = parse_k8s_pb(pb_root)
    openapi, resources = parse_openapi(oa_root)
    schema, specials, problems, resources = build(pb, args.go_src, openapi, resources)
    sources = [os.path.basename(pb_root) + " (tags, wire types)",
               f"kubernetes Go types {GO_TAG} (JSON names, pointer/omitempty/omitzero/inline)",
               os.path.basename(oa_root) + f" feature {OPENAPI_FEATURE} (kinds, JSON name cross-check)"]
    text, nmsg, nfields, nnames = emit(schema, specials, resources, sources)
    sys.stdout.write(rustfmt(text))
    for p in problems:
        warn(p)
    warn(f"{len(resources)} kinds, {nmsg} messages, {nfields} fields, {nnames} names, {len(problems)} notes")
    if args.strict and problems:
        sys.exit(1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Keeps runtime/src in the layered shape that `runtime/src/lib.rs` (Layout)
and DESIGN.md describe, so that it stays true after every change. CI runs it
(and its self-test, `--self-test`, which plants each kind of violation in a
scratch tree and fails unless every one is reported).

Every file is read through a small lexer first: comments, strings and
character literals are blanked, white space around `::` is squeezed, and
items marked `#[cfg(test)]` are dropped (only the item, found by brace
depth). Paths are then resolved to absolute module paths: `crate::`,
`super::` chains, `self::`, child modules, and `use` trees expanded across
lines and braces.

1. Layers. Every top-level module of runtime/src may name only the modules
   ALLOWED below (`queue` only from `worker` and `cli`; no Redis code in the
   sandbox; `ids` and `locks` nothing). A `pub use` of another module's
   items must not widen a layer: every module allowed to import the
   re-exporter must be allowed to import the origin too.
2. Outside crates and unsafe code. `wasmtime` only in `sandbox/`; the
   `redis` crate nowhere in `sandbox/`, `plugins/`, `ids`, `locks` (as
   `redis::`, `::redis::`, `use redis as …` or `extern crate redis`);
   `unsafe` (denied by the workspace lints) allowed back only in `sandbox/`.
3. No circles between files. Sibling modules (a file, or a folder's
   `mod.rs` for the folder) must not reference each other in a circle. A
   child using its own parent is the ordinary Rust module shape and is not
   counted.
4. Short functions: none longer than MAX_FN_LINES lines (test code aside).

`--longest N` lists the N longest functions (for the closing note of a
refactoring). `SPOOL_SRC=DIR` checks another tree.
"""

import os
import re
import sys
import tempfile

ROOT = os.environ.get("SPOOL_SRC") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "runtime", "src"
)

# Top-level module -> the top-level modules it may import (None: anything).
BASE = {"ids", "locks"}
ALLOWED = {
    "ids": set(),
    "locks": set(),
    "config": set(),
    "metrics": BASE,
    "redis": BASE,
    "sandbox": BASE,
    "tenants": BASE | {"redis", "config"},
    "kv": BASE | {"redis", "sandbox", "tenants"},
    "plugins": BASE | {"sandbox", "config"},
    "deploy": BASE | {"redis", "plugins"},
    "cache": BASE | {"redis", "tenants"},
    "queue": BASE | {"redis", "tenants"},
    "worker": BASE | {"redis", "sandbox", "tenants", "kv", "plugins", "deploy", "cache", "queue", "metrics"},
    "tokens": BASE | {"redis"},
    "api": BASE | {"redis", "tenants", "queue", "tokens", "config", "metrics", "deploy", "plugins", "sandbox", "cache", "kv"},
    "cli": None,
    "main": None,
    "lib": None,
}
# Outside crates and the top-level modules that may not use them.
FORBIDDEN_CRATES = {
    "wasmtime": lambda top: top != "sandbox",
    "wasmtime_wasi": lambda top: top != "sandbox",
    "redis": lambda top: top in {"sandbox", "plugins", "ids", "locks"},
}
MAX_FN_LINES = 60

CHAR_LITERAL = re.compile(r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'\n])'")
RAW_STRING = re.compile(r'b?r(#*)"')
FN_START = re.compile(
    r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:(?:const|async|unsafe|extern\s+\"[^\"]*\")\s+)*fn\s+(\w+)"
)
CFG_TEST = re.compile(r"#\[cfg\(test\)\]")
USE = re.compile(r"(?<![\w:])(pub(?:\([^)]*\))?\s+)?use\s+([^;]*);", re.S)
PATH = re.compile(r"(?<![\w:])((?:crate|super|self)(?:::(?:\w+))+)")


def blank(text):
    """`text` with its newlines kept and everything else turned to spaces."""
    return re.sub(r"[^\n]", " ", text)


def strip(source):
    """Blank comments, strings and char literals; keep lines where they were."""
    out, i, n = [], 0, len(source)
    while i < n:
        if source.startswith("//", i):
            j = source.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(source[i:j]))
            i = j
        elif source.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if source.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif source.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(source[i:j]))
            i = j
        elif (m := RAW_STRING.match(source, i)) and (i == 0 or not (source[i - 1].isalnum() or source[i - 1] == "_")):
            end = source.find('"' + m.group(1), m.end())
            end = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""' + blank(source[i + 2:end]))
            i = end
        elif source[i] == '"':
            j = i + 1
            while j < n and source[j] != '"':
                j += 2 if source[j] == "\\" else 1
            out.append('""' + blank(source[i + 2:j + 1]))
            i = j + 1
        elif source[i] == "'" and (m := CHAR_LITERAL.match(source, i)):
            out.append("' '")
            i = m.end()
        else:
            out.append(source[i])
            i += 1
    return "".join(out)


def drop_test_items(code):
    """Blank every item marked `#[cfg(test)]`, to the end of that item."""
    while (m := CFG_TEST.search(code)) is not None:
        i = m.end()
        depth = 0
        while i < len(code):
            c = code[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    i += 1
                    break
            elif c == ";" and depth == 0:
                i += 1
                break
            i += 1
        code = code[: m.start()] + blank(code[m.start():i]) + code[i:]
    return code


def read_code(path):
    with open(path, encoding="utf-8") as f:
        code = drop_test_items(strip(f.read()))
    # `crate :: queue` is `crate::queue`; newlines are kept for line numbers.
    return re.sub(r"[ \t]*::[ \t]*", "::", code)


def rust_files():
    for dirpath, _, names in os.walk(ROOT):
        for name in sorted(names):
            if name.endswith(".rs"):
                yield os.path.relpath(os.path.join(dirpath, name), ROOT)


def module_path(rel):
    """a/b.rs -> [a, b]; a/mod.rs -> [a]; lib.rs, main.rs -> []."""
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "mod" or (len(parts) == 1 and parts[0] in ("lib", "main")):
        parts = parts[:-1]
    return parts


def is_module(path):
    if not path:
        return True
    base = os.path.join(ROOT, *path)
    return os.path.exists(base + ".rs") or os.path.exists(os.path.join(base, "mod.rs"))


def expand_use(tree):
    """`a::{b, c::{d, e as f}}` -> [[a, b], [a, c, d], [a, c, e]]."""
    tree = re.sub(r"\s+", "", tree)

    def split_top(text):
        parts, depth, start = [], 0, 0
        for i, c in enumerate(text):
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            elif c == "," and depth == 0:
                parts.append(text[start:i])
                start = i + 1
        parts.append(text[start:])
        return [p for p in parts if p]

    def walk(text, prefix):
        brace = text.find("{")
        if brace < 0:
            name = re.sub(r"as\w+$", "", text) if re.search(r"\w+as\w+$", text) else text
            return [prefix + [s for s in name.split("::") if s and s not in ("*", "self")]]
        head = [s for s in text[:brace].split("::") if s]
        inner = text[brace + 1: text.rfind("}")]
        out = []
        for part in split_top(inner):
            out += walk(part, prefix + head)
        return out

    return [p for p in walk(tree, []) if p]


def resolve(segments, here):
    """An absolute module path for `segments` used in module `here`, or None
    for an outside crate. Stops at the deepest segment that is a module."""
    if segments[0] == "crate":
        path, rest = [], segments[1:]
    elif segments[0] in ("super", "self"):
        path, rest = list(here), segments
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                if not path:
                    return None
                path = path[:-1]
            rest = rest[1:]
    elif is_module(here + [segments[0]]):
        path, rest = list(here), segments
    else:
        return None
    for s in rest:
        if not is_module(path + [s]):
            break
        path = path + [s]
    return path


def references(code, here):
    """(line, absolute module path, is_pub_use) of every reference."""
    refs = []
    for m in USE.finditer(code):
        line = code.count("\n", 0, m.start()) + 1
        for segments in expand_use(m.group(2)):
            target = resolve(segments, here)
            if target is not None:
                refs.append((line, target, bool(m.group(1))))
    without_uses = USE.sub(lambda m: blank(m.group(0)), code)
    for m in PATH.finditer(without_uses):
        line = without_uses.count("\n", 0, m.start()) + 1
        target = resolve(m.group(1).split("::"), here)
        if target is not None:
            refs.append((line, target, False))
    return refs


def may_import(importer, target):
    allowed = ALLOWED.get(importer, set())
    return allowed is None or target == importer or target in allowed


def check_file(rel, code, errors):
    here = module_path(rel)
    top = here[0] if here else rel[:-3]
    for line, target, is_pub in references(code, here):
        if not target:
            continue
        origin = target[0]
        if not may_import(top, origin):
            errors.append(f"{rel}:{line}: {top} may not import crate::{origin} (layers: see lib.rs)")
        elif is_pub and origin != top:
            wider = [m for m in ALLOWED if may_import(m, top) and m != top and not may_import(m, origin)]
            if wider:
                errors.append(
                    f"{rel}:{line}: pub use of crate::{origin} in {top} widens a layer ({', '.join(sorted(wider))} may not import {origin})"
                )
    for n, text in enumerate(code.split("\n"), 1):
        for crate, forbidden in FORBIDDEN_CRATES.items():
            if not forbidden(top):
                continue
            for m in re.finditer(rf"\b{crate}\b", text):
                before = text[: m.start()]
                if before.endswith(".") or re.search(r"[\w>]::$", before):
                    continue  # a field, or `crate::redis`-like paths (checked as layers)
                errors.append(f"{rel}:{n}: {top} may not use the {crate} crate")
        if top != "sandbox" and re.search(r"\bunsafe\b", text):
            errors.append(f"{rel}:{n}: unsafe code outside sandbox/")


def check_circles(codes, errors):
    edges = {}
    for rel, code in codes.items():
        here = module_path(rel)
        if not here:
            continue
        parent = here[:-1]
        for line, target, _ in references(code, here):
            if len(target) > len(parent) and target[: len(parent)] == parent:
                sibling = tuple(target[: len(parent) + 1])
                if list(sibling) != here:
                    edges.setdefault(tuple(here), {}).setdefault(sibling, f"{rel}:{line}")
    state = {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for target, where in sorted(edges.get(node, {}).items()):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                errors.append(f"{where}: circle between files: {' -> '.join('/'.join(c) for c in cycle)}")
            elif state.get(target) is None:
                visit(target, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if state.get(node) is None:
            visit(node, [])


def functions(codes):
    """(lines, file:line, name) of every fn with a body, test code aside."""
    found = []
    for rel, code in codes.items():
        lines = code.split("\n")
        for i, line in enumerate(lines):
            m = FN_START.match(line)
            if not m:
                continue
            depth, started, j = 0, False, i
            while j < len(lines):
                text = lines[j] if j > i else lines[j][m.end():]
                for c in text:
                    if c == "{":
                        depth, started = depth + 1, True
                    elif c == "}":
                        depth -= 1
                    elif c == ";" and not started:
                        break
                if (started and depth <= 0) or (not started and ";" in text):
                    break
                j += 1
            if started:
                found.append((j - i + 1, f"{rel}:{i + 1}", m.group(1)))
    return sorted(found, reverse=True)


def check():
    errors = []
    codes = {rel: read_code(os.path.join(ROOT, rel)) for rel in rust_files()}
    for rel, code in codes.items():
        check_file(rel, code, errors)
    check_circles(codes, errors)
    fns = functions(codes)
    for length, where, name in fns:
        if length > MAX_FN_LINES:
            errors.append(f"{where}: fn {name} is {length} lines; split it to {MAX_FN_LINES} or fewer")
    return errors, fns


# Each planted file and a piece of the message its violation must produce.
SELF_TEST = {
    "lib.rs": ("pub mod sandbox; pub mod worker; pub mod plugins; pub mod queue; pub mod ids;", None),
    "ids.rs": ("pub struct X;", None),
    "queue/mod.rs": ("pub struct Y;\n", None),
    "sandbox/mod.rs": ("use crate::{ids::X,\n    queue::Y};\nmod limits;\nmod socket;\nmod late;\n",
                       "sandbox/mod.rs:1: sandbox may not import crate::queue"),
    "sandbox/limits.rs": ("fn f() { let _ = super::super::queue::Y; }\n",
                          "sandbox/limits.rs:1: sandbox may not import crate::queue"),
    "sandbox/socket.rs": ("// redis::cmd in a comment is fine\nfn f() { let s = \"redis::cmd\"; ::redis::cmd(\"GET\"); }\n",
                          "sandbox/socket.rs:2: sandbox may not use the redis crate"),
    "sandbox/late.rs": ("#[cfg(test)]\nuse crate::ids::X;\nfn g() { tokio::select! { _ = crate :: queue :: Y => {} } }\n",
                        "sandbox/late.rs:3: sandbox may not import crate::queue"),
    "plugins/mod.rs": ("pub use crate::sandbox::Z;\nfn h() { unsafe { } }\n",
                       "pub use of crate::sandbox in plugins widens a layer"),
    "plugins/extra.rs": ("", "plugins/mod.rs:2: unsafe code outside sandbox/"),
    "worker/mod.rs": ("mod a;\nmod b;\n", None),
    "worker/a.rs": ("use super::{\n    b::X,\n};\npub struct Y;\n", "circle between files: worker/a -> worker/b -> worker/a"),
    "worker/b.rs": ("use crate::worker::{a::Y};\npub struct X;\n"
                    "fn long() {\n    let url = \"redis://x\".split_once(\"://\");\n    let c = '}';\n"
                    + "    let _ = 1;\n" * 70 + "}\n",
                    "worker/b.rs:3: fn long is 74 lines"),
}


def self_test():
    global ROOT
    saved = ROOT
    with tempfile.TemporaryDirectory() as tmp:
        for rel, (text, _) in SELF_TEST.items():
            path = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        ROOT = tmp
        errors, _ = check()
        ROOT = saved
    missed = [want for _, want in SELF_TEST.values() if want and not any(want in e for e in errors)]
    clean = [e for e in errors if e.startswith(("ids.rs", "queue/mod.rs", "lib.rs"))]
    for want in missed:
        print(f"check-layout self-test: not reported: {want}", file=sys.stderr)
    for e in clean:
        print(f"check-layout self-test: reported a clean file: {e}", file=sys.stderr)
    if missed or clean:
        print("errors reported:\n  " + "\n  ".join(errors), file=sys.stderr)
        sys.exit(1)
    print(f"check-layout self-test: ok ({len(errors)} planted violations reported)")


def main():
    if "--self-test" in sys.argv:
        self_test()
    errors, fns = check()
    errors = list(dict.fromkeys(errors))  # one line per place and reason
    if "--longest" in sys.argv:
        n = int(sys.argv[sys.argv.index("--longest") + 1])
        for length, where, name in fns[:n]:
            print(f"{length:5} {name:32} {where}")
    for e in errors:
        print(f"check-layout: {e}", file=sys.stderr)
    if errors:
        sys.exit(1)
    print(f"check-layout: ok ({len(fns)} functions, layers and circles checked)")


if __name__ == "__main__":
    main()

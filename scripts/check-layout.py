#!/usr/bin/env python3
"""Keeps runtime/src in the layered shape that `runtime/src/lib.rs` (Layout)
and DESIGN.md describe, so that it stays true after every change. CI runs it.

Three checks, each failing with the file and line that broke it:

1. Layers. Every `crate::MODULE` a top-level module of runtime/src names
   (in `use` lines or paths in code, not in comments) must be one it may
   import (ALLOWED below): `queue` only from `worker` and `cli`; no Redis
   code in `sandbox`; `ids` and `locks` import nothing.
2. Outside crates and unsafe code. `wasmtime` only in `sandbox/`; the
   `redis` crate nowhere in `sandbox/`, `plugins/` or `ids`/`locks`;
   `unsafe` (denied by the workspace lints) allowed back only in `sandbox/`.
3. No circles between files. Within each folder, sibling files (a file, or
   a folder's `mod.rs` for the folder) must not import each other in a
   circle. A child file using its own parent (`super::` items of the file
   that declares it) is the ordinary Rust module shape and is not counted.

`--longest N` also lists the N longest functions (for the closing note of a
refactoring), and every function longer than MAX_FN_LINES fails the check.
"""

import os
import re
import sys

ROOT = os.environ.get("SPOOL_SRC") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "runtime", "src"
)

# Top-level module -> the top-level modules it may import.
BASE = {"ids", "locks"}
ALLOWED = {
    "ids": set(),
    "locks": set(),
    "config": set(),
    "redis": BASE,
    "sandbox": BASE,
    "kv": BASE | {"redis", "sandbox"},
    "plugins": BASE | {"sandbox", "config"},
    "deploy": BASE | {"redis", "plugins"},
    "cache": BASE | {"redis"},
    "queue": BASE | {"redis"},
    "worker": BASE | {"redis", "sandbox", "kv", "plugins", "deploy", "cache", "queue"},
    "cli": None,  # the edge: anything
    "main": None,
    "lib": None,
}
# Outside crates a module may not name.
FORBIDDEN_CRATES = {
    "wasmtime": lambda top: top != "sandbox",
    "wasmtime_wasi": lambda top: top != "sandbox",
    "redis": lambda top: top in {"sandbox", "plugins", "ids", "locks"},
}
MAX_FN_LINES = 60

COMMENT = re.compile(r"^\s*//")
CRATE_REF = re.compile(r"\bcrate::([a-z_]+)")
SUPER_REF = re.compile(r"\bsuper::([a-z_]+)")
SUPER_GROUP = re.compile(r"\buse super::\{([^}]*)\}")
EXTERN_REF = re.compile(r"(?<![:\w])(wasmtime_wasi|wasmtime|redis)::")
FN_START = re.compile(r"^\s*(pub(\([a-z]+\))?\s+)?(async\s+)?(const\s+)?fn\s+(\w+)")


def rust_files():
    for dirpath, _, names in os.walk(ROOT):
        for name in sorted(names):
            if name.endswith(".rs"):
                yield os.path.relpath(os.path.join(dirpath, name), ROOT)


def top_module(rel):
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def code_lines(path):
    """(number, line) of lines that are not comments, and not in a test module."""
    out = []
    in_tests = False
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if re.match(r"^#\[cfg\(test\)\]", line):
                in_tests = True
            if in_tests or COMMENT.match(line):
                continue
            out.append((n, line))
    return out


def module_of(rel):
    """The module a file defines, as a path below its folder: a/b.rs -> a/b, a/mod.rs -> a."""
    if rel.endswith("mod.rs"):
        return os.path.dirname(rel)
    return rel[:-3]


def sibling_node(folder, name):
    """The file that defines sibling module `name` in `folder`, if any."""
    for candidate in (os.path.join(folder, name + ".rs"), os.path.join(folder, name, "mod.rs")):
        if os.path.exists(os.path.join(ROOT, candidate)):
            return module_of(candidate)
    return None


def check_layers(errors):
    for rel in rust_files():
        top = top_module(rel)
        allowed = ALLOWED.get(top, set())
        for n, line in code_lines(os.path.join(ROOT, rel)):
            for m in CRATE_REF.finditer(line):
                target = m.group(1)
                if allowed is not None and target != top and target not in allowed:
                    errors.append(f"{rel}:{n}: {top} may not import crate::{target} (layers: see lib.rs)")
            for m in EXTERN_REF.finditer(line):
                crate = m.group(1)
                if crate in FORBIDDEN_CRATES and FORBIDDEN_CRATES[crate](top):
                    if crate == "redis" and "crate::redis" in line:
                        continue
                    errors.append(f"{rel}:{n}: {top} may not use the {crate} crate")
            if top != "sandbox" and re.search(r"\bunsafe\b", line):
                errors.append(f"{rel}:{n}: unsafe code outside sandbox/")


def sibling_graph():
    """Edges between sibling modules: module path -> {module paths}."""
    edges = {}
    for rel in rust_files():
        node = module_of(rel)
        # A file's siblings live in the folder of its parent module.
        folder = os.path.dirname(node)
        top = top_module(rel)
        for n, line in code_lines(os.path.join(ROOT, rel)):
            names = [m.group(1) for m in SUPER_REF.finditer(line)]
            for group in SUPER_GROUP.finditer(line):
                names += [p.strip().split("::")[0] for p in group.group(1).split(",")]
            for m in CRATE_REF.finditer(line):
                # crate::TOP::NAME within the same top-level module.
                rest = line[m.end():]
                if m.group(1) == top and rest.startswith("::"):
                    inner = re.match(r"::([a-z_]+)", rest)
                    if inner and os.path.dirname(node) == top:
                        names.append(inner.group(1))
            for name in names:
                if not name or name == "super":
                    continue
                target = sibling_node(folder, name)
                if target and target != node:
                    edges.setdefault(node, {})[target] = f"{rel}:{n}"
    return edges


def check_circles(errors):
    edges = sibling_graph()
    state = {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for target, where in sorted(edges.get(node, {}).items()):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                errors.append(f"{where}: circle between files: {' -> '.join(cycle)}")
            elif state.get(target) is None:
                visit(target, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if state.get(node) is None:
            visit(node, [])


def functions():
    """(lines, file:line, name) of every fn with a body in runtime/src."""
    found = []
    for rel in rust_files():
        with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
            lines = f.readlines()
        i = 0
        while i < len(lines):
            m = FN_START.match(lines[i])
            if not m or "#[cfg(test)]" in "".join(lines[max(0, i - 2):i]):
                i += 1
                continue
            depth, started, j = 0, False, i
            while j < len(lines):
                text = re.sub(r'"(\\.|[^"\\])*"', '""', lines[j].split("//")[0])
                depth += text.count("{") - text.count("}")
                started = started or "{" in text
                if started and depth <= 0:
                    break
                if not started and text.rstrip().endswith(";"):
                    break  # a declaration without a body
                j += 1
            if started:
                found.append((j - i + 1, f"{rel}:{i + 1}", m.group(5)))
            i += 1
    return sorted(found, reverse=True)


def main():
    errors = []
    check_layers(errors)
    check_circles(errors)
    fns = functions()
    for length, where, name in fns:
        if length > MAX_FN_LINES:
            errors.append(f"{where}: fn {name} is {length} lines; split it below {MAX_FN_LINES}")
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

#!/usr/bin/env python3
"""Turns callgrind profiles of the shim binaries into a linker symbol order.

Usage: code_order.py OUT MAP... --first PROFILE... --then PROFILE...

Each MAP is the linker map (`-Map`, lld's format) of one binary, named
`<binary>.map`; each PROFILE is a callgrind output (`--dump-instr=yes
--compress-pos=no`) of a run of one of those binaries, stripped as shipped.
Every instruction callgrind saw run is looked up by its address in the map
of its binary, and the symbols of the input sections that hold them are
written to OUT, one a line, after a comment naming the compiler: first the
idle trimmer's and those the
`--first` profiles ran, then those the others ran, each group in the order
the linker had laid them out. `code-order.sh` explains why.
"""

import bisect
import os
import re
import subprocess
import sys

# "VMA LMA SIZE ALIGN <indent> file.o:(section)" in lld's map; symbol lines
# follow their section with the symbol's (demangled) name instead.
INPUT = re.compile(r"^\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+\s+(\S.*):\((\.text[^)]*)\)$")
SYMBOL = re.compile(r"^\s*[0-9a-f]+\s+[0-9a-f]+\s+[0-9a-f]+\s+\d+\s+(\S+)$")
FUNCTION_SECTION = re.compile(r"^\.text\.(?:(?:unlikely|hot|startup|exit)\.)?(.+)$")
# Run only when an idle shim gives its code back, which it does not under
# valgrind (too slow to count as idle): listed with the idle code by name.
IDLE_ALSO = re.compile(r"13shim_examples6memory|^(?:__)?madvise$")
# glibc's variants of one function for each instruction set, of which the
# CPU that runs the binary picks one at start-up (`__memmove_evex_unaligned`).
VARIANT = re.compile(r"^__(\w+?)_(?:sse|ssse|avx|evex|fma)")


def read_map(path):
    """Input sections of .text as sorted (start, end, [symbols])."""
    sections = []
    with open(path, encoding="utf-8", errors="replace") as f:
        current = None
        for line in f:
            m = INPUT.match(line)
            if m:
                start, size = int(m.group(1), 16), int(m.group(2), 16)
                current = [start, start + size, m.group(4), []]
                sections.append(current)
                continue
            if ":(" in line:
                current = None
                continue
            m = SYMBOL.match(line)
            if m and current is not None and "(" not in m.group(1):
                current[3].append(m.group(1))
    result = []
    for start, end, section, symbols in sections:
        named = FUNCTION_SECTION.match(section)
        suffix = named.group(1) if named else None
        # Rust's function sections are named after their one (mangled)
        # function, which the map lists demangled; glibc's `.text.avx`,
        # `.text.sse4.2` ... are not names but hold the symbols listed.
        if suffix and (suffix in symbols or suffix.startswith(("_ZN", "_R"))):
            symbols = [suffix]
        result.append((start, end, symbols))
    result.sort()
    return result


def read_profile(path):
    """Addresses of the instructions run, per object file path.

    Needs callgrind's `--dump-instr=yes --compress-pos=no`: every cost line
    then starts with the absolute address of an instruction. Functions are
    found by their instructions, not by calls to them, because optimised
    code reaches many functions by a jump (a tail call) that callgrind does
    not count as entering a function.
    """
    run = {}
    objects = {}
    ob = cob = None
    previous = ""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = re.match(r"^(c?ob)=\((\d+)\)(?: (.*))?$", line)
            if m:
                if m.group(3):
                    objects[m.group(2)] = m.group(3)
                if m.group(1) == "ob":
                    ob = cob = objects.get(m.group(2))
                else:
                    cob = objects.get(m.group(2))
                continue
            if line.startswith("cfn="):
                # A cob= line, if any, came just before: otherwise the
                # called function is in the caller's object.
                if not previous.startswith("cob="):
                    cob = ob
            previous = line
            m = re.match(r"^calls=\d+ 0x([0-9a-f]+)", line)
            if m:
                run.setdefault(cob, set()).add(int(m.group(1), 16))
                cob = ob
                continue
            m = re.match(r"^0x([0-9a-f]+) ", line)
            if m:
                run.setdefault(ob, set()).add(int(m.group(1), 16))
    return run


def hot_sections(maps, profiles):
    """Indexes of the sections run, per binary, and their glibc variants."""
    hot = {name: set() for name in maps}
    starts = {name: [s[0] for s in sections] for name, sections in maps.items()}
    for profile in profiles:
        for obj, addresses in read_profile(profile).items():
            name = os.path.basename(obj or "")
            if name not in maps:
                continue
            for address in addresses:
                i = bisect.bisect_right(starts[name], address) - 1
                if i >= 0 and address < maps[name][i][1]:
                    hot[name].add(i)
    for name, sections in maps.items():
        # valgrind's CPU is not the host's: any variant of a function that
        # ran may be the one a real CPU runs.
        bases = {m.group(1) for i in hot[name] for sym in sections[i][2] for m in [VARIANT.match(sym)] if m}
        for i, (_, _, symbols) in enumerate(sections):
            if any(m and m.group(1) in bases for m in map(VARIANT.match, symbols)):
                hot[name].add(i)
    return hot


def main(argv):
    if "--first" not in argv or "--then" not in argv or len(argv) < 6:
        sys.exit(__doc__)
    out = argv[1]
    first_at, then_at = argv.index("--first"), argv.index("--then")
    maps = {os.path.basename(p)[: -len(".map")]: read_map(p) for p in argv[2:first_at]}
    groups = [hot_sections(maps, argv[first_at + 1 : then_at]), hot_sections(maps, argv[then_at + 1 :])]
    for name, sections in maps.items():
        groups[0][name].update(i for i, (_, _, syms) in enumerate(sections) if any(map(IDLE_ALSO.search, syms)))
    written = set()
    lines = []
    for group in groups:
        for name in sorted(maps):
            for i in sorted(group[name]):
                for symbol in maps[name][i][2]:
                    if symbol not in written:
                        written.add(symbol)
                        lines.append(symbol)
    for name, sections in sorted(maps.items()):
        total = sum(e - s for s, e, _ in sections)
        sizes = [sum(sections[i][1] - sections[i][0] for i in g[name]) // 1024 for g in groups]
        print(f"{name}: {len(groups[1][name])} of {len(sections)} functions run, "
              f"{sizes[1]} of {total // 1024} KiB of code; first: {sizes[0]} KiB", file=sys.stderr)
    # The compiler the names are from: build.rs warns when another builds.
    compiler = subprocess.run(["rustc", "-V"], capture_output=True, text=True, check=True).stdout.strip()
    with open(out, "w", encoding="utf-8") as f:
        f.write(f"# {compiler}\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv)

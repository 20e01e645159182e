"""XLA's compiled HLO module text (``compiled.as_text()``) read as computations of
instructions with their operands: what :func:`cianna_jax.perf_eval` attributes to layers
and what ``benchmarks/profile_step.py`` follows from a thunk to its readers."""

from __future__ import annotations

import re

__all__ = ["parse_hlo", "readers"]

_HLO_LINE = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.*)$")
_CALLEE = re.compile(r"(?:calls|to_apply|body|condition|branch_computations)="
                     r"\{?((?:%[\w.\-]+(?:,\s*)?)+)\}?")


def _balanced(text: str, start: int) -> int:
    """Index of the parenthesis closing the one at ``text[start]``."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return len(text) - 1


def parse_hlo(text: str):
    """Computations of an HLO module's text: ({name: [instruction dicts]}, entry name).
    An instruction: name, opcode, operands, callees, op_name, parameter number, root,
    and its attributes' text (``attrs``: metadata included)."""
    comps, entry, current = {}, None, None
    for line in text.splitlines():
        if line.startswith("ENTRY ") or (line.startswith("%") and line.rstrip().endswith("{")):
            name = (line.split()[1] if line.startswith("ENTRY ") else line.split()[0]).lstrip("%")
            current = comps.setdefault(name, [])
            if line.startswith("ENTRY "):
                entry = name
            continue
        if line.startswith("}"):
            current = None
            continue
        m = _HLO_LINE.match(line) if current is not None else None
        if m is None:
            continue
        rest = m.group(2)
        after = rest[_balanced(rest, 0) + 1:] if rest.startswith("(") else rest.partition(" ")[2]
        after = after.lstrip()
        paren = after.find("(")
        if paren < 0:
            continue
        close = _balanced(after, paren)
        opcode, args, attrs = after[:paren].strip(), after[paren + 1:close], after[close + 1:]
        op_name = re.search(r'op_name="([^"]*)"', attrs)
        callees = [c.lstrip("%") for group in _CALLEE.findall(attrs)
                   for c in re.split(r",\s*", group)]
        current.append(dict(name=m.group(1), opcode=opcode, root="ROOT" in line[:line.find("%")],
                            attrs=attrs,
                            operands=re.findall(r"%([\w.\-]+)", args), callees=callees,
                            op_name=op_name.group(1) if op_name else "",
                            number=int(args) if opcode == "parameter" and args.isdigit() else None))
    return comps, entry


def readers(comps: dict) -> dict[str, set[str]]:
    """Instruction name -> the names of the instructions that read it, over the
    computations :func:`parse_hlo` returns."""
    out: dict[str, set[str]] = {}
    for instrs in comps.values():
        for ins in instrs:
            for operand in ins["operands"]:
                out.setdefault(operand, set()).add(ins["name"])
    return out

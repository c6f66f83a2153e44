"""The decoding grammar for line programs, derived from the tool definitions.

``line_grammar(registry)`` writes GBNF (llama.cpp's grammar format, which vLLM's
structured outputs accept too): one rule per tool with its keyword arguments in declared
order, each argument's value shaped by its type (a variable for images and objects, a
quoted string for text, a number, a list of strings...), and a program that ends with
``RESULT=NAME``. A plug-in tool appears in the grammar with no extra work.

The grammar is regular (no rule refers to itself), so :func:`gbnf_to_regex` can turn the
GBNF text into an equivalent Python regular expression: tests use it to check that every
library example is accepted, and the planner uses it to notice a server that ignored the
constraint.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from tools.registry import Registry

MAX_STEPS = 16
MAX_STRING = 240
_QUOTE_SQ = '"\'"'  # the GBNF literal for one single quote
_QUOTE_DQ = '"\\""'  # ... and for one double quote
VALUE_RULES = {
    "name": "[A-Za-z] [A-Za-z0-9_]{0,23}",
    # no quote, backslash or control character in a string (a raw newline ends a line)
    "sq": _QUOTE_SQ + r" [^'\\\x00-\x1f]{0," + str(MAX_STRING) + "} " + _QUOTE_SQ,
    "dq": _QUOTE_DQ + r' [^"\\\x00-\x1f]{0,' + str(MAX_STRING) + "} " + _QUOTE_DQ,
    "str": "sq | dq",
    "num": '"-"? [0-9]{1,7} ("." [0-9]{1,6})?',
    "bool": '"True" | "False"',
    "strlist": '"[" (str ("," " "? str){0,31})? "]"',
    "numlist": '"[" num ("," " "? num){3} "]"',
}


def _value(type_name: str, optional: bool) -> str:
    """The GBNF alternatives a value of ``type_name`` may take."""
    forms: list[str] = []
    for t in type_name.split("|"):
        if t == "Text":
            forms += ["str"]
        elif t == "Number":
            forms += ["num"]
        elif t == "Bool":
            forms += ["bool"]
        elif t == "TextList":
            forms += ["strlist", "str"]
        elif t == "Box":
            forms += ["numlist"]
        elif t == "Expression":
            forms += ["str"]
        elif t == "Any":
            forms += ["str", "num", "bool"]
    if type_name != "Expression":
        forms.append("name")
    if optional:
        forms.append('"None"')
    unique = list(dict.fromkeys(forms))
    return unique[0] if len(unique) == 1 else "(" + " | ".join(unique) + ")"


def _rule_name(tool_name: str) -> str:
    return "tool-" + re.sub(r"[^a-z0-9]+", "-", tool_name.lower())


def line_grammar(
    registry: Registry, *, max_steps: int = MAX_STEPS, first: Collection[str] | None = None
) -> str:
    """GBNF for a line program over ``registry``'s tools. With ``first`` (tool names), the
    first step may call only those tools (or the program is its RESULT line alone): the
    planner resumes a program that looped on a tool from the step before the loop, told to
    go on with a tool that takes what the loop chose (:mod:`sandbox.repeats`)."""
    rules: dict[str, str] = {
        "root": f"step{{0,{max_steps - 1}}} result",
        "result": '"RESULT=" name "\\n"?',
        "step": 'name "=" call "\\n"',
    }
    leading = list(first) if first is not None else []  # ``first`` is reused below
    if first is not None and max_steps > 1:
        rules["root"] = f"(first step{{0,{max_steps - 2}}})? result"
        rules["first"] = 'name "=" call-first "\\n"'
    calls: list[str] = []
    for t in registry:
        spec = t.spec
        parts = [f'"{spec.name}("']
        first = True
        single = len(spec.params) == 1  # Eval('...'), Count(OBJ0): the keyword may be left out
        for p in spec.params:
            sep = "" if first else '", " '
            keyword = f'"{p.name}="?' if single else f'"{p.name}="'
            piece = f"{sep}{keyword} {_value(p.type, not p.required)}"
            if p.required:
                parts.append(piece)
                first = False
            else:
                optional_sep = '", " ' if not first else ""
                parts.append(f'({optional_sep}"{p.name}=" {_value(p.type, True)})?')
        parts.append('")"')
        rule = _rule_name(spec.name)
        rules[rule] = " ".join(parts)
        calls.append(rule)
    rules["call"] = " | ".join(calls)
    if "first" in rules:
        allowed = {_rule_name(registry.get(n).spec.name) for n in leading if n in registry}
        if allowed:
            rules["call-first"] = " | ".join(c for c in calls if c in allowed)
        else:  # no tool may come first: the program is its RESULT line
            rules["root"] = "result"
            del rules["first"]
    rules.update(VALUE_RULES)
    return "\n".join(f"{name} ::= {body}" for name, body in rules.items()) + "\n"


# --- GBNF to regex (for the regular subset this module writes) -------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<lit>"(?:[^"\\]|\\.)*")
      | (?P<cls>\[(?:[^\]\\]|\\.)*\])
      | (?P<rep>\{\d+(?:,\d*)?\}|[?*+])
      | (?P<op>[|()])
      | (?P<ref>[a-zA-Z][a-zA-Z0-9-]*)
    )""",
    re.X,
)


def _unescape(body: str) -> str:
    return body.encode("utf-8").decode("unicode_escape")


def _tokens(body: str) -> Iterable[tuple[str, str]]:
    pos = 0
    body = body.strip()
    while pos < len(body):
        m = _TOKEN.match(body, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot read grammar text at: {body[pos : pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        yield kind, m.group(kind)


def gbnf_to_regex(gbnf: str, start: str = "root") -> re.Pattern[str]:
    """A compiled regex accepting exactly the strings the (non-recursive) GBNF accepts."""
    rules: dict[str, str] = {}
    for line in gbnf.splitlines():
        if "::=" in line:
            name, _, body = line.partition("::=")
            rules[name.strip()] = body
    done: dict[str, str] = {}

    def convert(name: str, stack: tuple[str, ...]) -> str:
        if name in done:
            return done[name]
        if name in stack:
            raise ValueError(f"rule {name} is recursive")
        out: list[str] = []
        for kind, text in _tokens(rules[name]):
            if kind == "lit":
                out.append("(?:" + re.escape(_unescape(text[1:-1])) + ")")
            elif kind == "cls":
                inner = _unescape(text[1:-1])
                negate = inner.startswith("^")
                chars = inner[1:] if negate else inner
                escaped = "".join("\\" + c if c in "\\]^[" else c for c in chars)
                out.append("[" + ("^" if negate else "") + escaped + "]")
            elif kind == "rep":
                out.append(text)
            elif kind == "op":
                out.append(text if text == "|" else ("(?:" if text == "(" else ")"))
            else:
                out.append("(?:" + convert(text, (*stack, name)) + ")")
        done[name] = "".join(out)
        return done[name]

    return re.compile(convert(start, ()), re.S)


def accepts(gbnf: str, text: str) -> bool:
    return gbnf_to_regex(gbnf).fullmatch(text) is not None

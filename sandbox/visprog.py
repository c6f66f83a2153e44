"""VisProg's Eval text rewritten into a plain Python expression (text in, text out).

VisProg writes ``Eval("'{ANSWER0}' == 'yes' xor {ANSWER1} > 2")``: placeholders stand for
earlier results and ``xor`` is an infix operator. ``prepare_visprog`` turns placeholders into
variable reads (values are bound, never pasted into the text) and ``a xor b`` into
``xor_(a, b)``, working on tokens so text inside quotes is left alone.

Text with nothing for the tokenizer to tell apart — printable ASCII without quotes, ``#``,
backslashes or ``xor``, brackets balanced — has its placeholders replaced by a regular
expression (each padded with spaces, so ``{A}{B}`` stays two tokens): the same tokens, hence
the same expression, without tokenizing in Python (~20 µs an expression).
"""

from __future__ import annotations

import io
import re
import sys
import tokenize

from .errors import ErrorCode, EvalError
from .safe_builtins import XOR_FUNCTION

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_STRING_PREFIX = re.compile(r"^([rRbBuUfF]*)(['\"]{1,3})(.*)\2$", re.S)
# no quotes, '#', '\\', '$', '?', '`', ';' or control characters; '!' only in '!='
PLAIN_TEXT = re.compile(r"(?:[ %&()*+,\-./0-9:<=>@A-Z\[\]^_a-z{|}~]|!=)*")
SPACED_PLACEHOLDER = re.compile(r"\{ *([A-Za-z_][A-Za-z0-9_]*) *\}")
_BRACKETS = re.compile(r"[()\[\]{}]")


def prepare_visprog(text: str) -> str:
    """Rewrite VisProg's Eval text into a plain expression.

    ``{X}`` outside quotes and ``'{X}'`` alone in quotes become the variable ``X``; a string
    with other text around placeholders becomes an f-string; ``a xor b`` becomes
    ``xor_(a, b)`` (xor binds loosest, as in VisProg's programs).
    """
    if "{" not in text and "xor" not in text:
        return text
    if "xor" not in text and PLAIN_TEXT.fullmatch(text):
        rewritten = SPACED_PLACEHOLDER.sub(spaced_placeholder, text)
        if not _BRACKETS.search(rewritten) or _balanced(rewritten):
            return rewritten
    return _tokenized(text)


def _tokenized(text: str) -> str:
    """``prepare_visprog`` on the tokenizer's tokens (any text)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError) as exc:
        raise EvalError(f"cannot read expression: {exc}", code=ErrorCode.BAD_EXPRESSION) from exc
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if (
            tok.type == tokenize.OP
            and tok.string == "{"
            and i + 2 < len(tokens)
            and tokens[i + 1].type == tokenize.NAME
            and tokens[i + 2].string == "}"
        ):
            out.append(tokens[i + 1].string)
            i += 3
            continue
        if tok.type == _FSTRING_START:  # Python 3.12+: an f-string is many tokens
            end = _fstring_end(tokens, i)
            out.append(_span(text, tok.start, tokens[end].end))  # kept as written
            i = end + 1
            continue
        if tok.type == tokenize.STRING:
            out.append(_rewrite_string(tok.string))
        elif tok.type not in _SKIPPED_TOKENS:
            out.append(tok.string)
        i += 1
    if "xor" in out:
        out = _rewrite_xor(out)
    return " ".join(out)


def spaced_placeholder(placeholder: re.Match[str]) -> str:
    """``{X}`` (a match of ``SPACED_PLACEHOLDER``) rewritten in plain text: `` X ``."""
    return f" {placeholder[1]} "  # (a function: a template would cost ~3x as much)


def _balanced(text: str) -> bool:
    """Whether every bracket closes the last one opened (then the tokenizer cannot fail)."""
    stack: list[str] = []
    for c in text:
        if c in _OPEN:
            stack.append(_OPEN[c])
        elif c in ")]}" and (not stack or stack.pop() != c):
            return False
    return not stack


if sys.version_info >= (3, 12):
    _FSTRING_START, _FSTRING_END = tokenize.FSTRING_START, tokenize.FSTRING_END
else:  # an f-string is one STRING token, which _rewrite_string leaves alone
    _FSTRING_START = _FSTRING_END = -1


def _fstring_end(tokens: list[tokenize.TokenInfo], start: int) -> int:
    """The index of the FSTRING_END closing the f-string opened at ``start`` (f-strings
    nest inside replacement fields)."""
    depth = 0
    for j in range(start, len(tokens)):
        if tokens[j].type == _FSTRING_START:
            depth += 1
        elif tokens[j].type == _FSTRING_END:
            depth -= 1
            if depth == 0:
                return j
    raise EvalError("unterminated f-string", code=ErrorCode.BAD_EXPRESSION)


def _span(text: str, start: tuple[int, int], end: tuple[int, int]) -> str:
    """The source between two tokenizer positions ((row from 1, column from 0))."""
    lines = text.splitlines(keepends=True)
    (r0, c0), (r1, c1) = start, end
    if r0 == r1:
        return lines[r0 - 1][c0:c1]
    return lines[r0 - 1][c0:] + "".join(lines[r0 : r1 - 1]) + lines[r1 - 1][:c1]


def _rewrite_string(literal: str) -> str:
    m = _STRING_PREFIX.match(literal)
    if not m or not _PLACEHOLDER.search(m.group(3)):
        return literal
    prefix, quote, body = m.groups()
    if "f" in prefix.lower() or "b" in prefix.lower():
        return literal
    whole = _PLACEHOLDER.fullmatch(body.strip())
    if whole:
        return whole.group(1)
    escaped = body.replace("{", "{{").replace("}", "}}")
    escaped = re.sub(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}", r"{\1}", escaped)
    return f"f{prefix}{quote}{escaped}{quote}"


_OPEN = {"(": ")", "[": "]", "{": "}"}
MAX_NESTING = 200  # Python's own parser refuses deeper brackets
_SKIPPED_TOKENS = {
    tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.COMMENT, tokenize.INDENT,
    tokenize.DEDENT,
}  # fmt: skip


def _rewrite_xor(tokens: list[str]) -> list[str]:
    """Turn ``a xor b`` at each bracket level into ``xor_(a, b)``, respecting commas."""

    def group(i: int, closing: str | None, depth: int) -> tuple[list[str], int]:
        if depth > MAX_NESTING:
            raise EvalError(
                f"brackets nested more than {MAX_NESTING} levels deep",
                code=ErrorCode.BAD_EXPRESSION,
            )
        items: list[list[list[str]]] = [[[]]]  # comma-separated items, each xor-separated parts
        while i < len(tokens):
            t = tokens[i]
            if closing is not None and t == closing:
                break
            if t in _OPEN:
                inner, i = group(i + 1, _OPEN[t], depth + 1)
                items[-1][-1].extend([t, *inner, _OPEN[t]])
            elif t == "," and closing is not None:
                items.append([[]])
            elif t == "xor":
                items[-1].append([])
            else:
                items[-1][-1].append(t)
            i += 1
        out: list[str] = []
        for n, parts in enumerate(items):
            if n:
                out.append(",")
            if len(parts) == 1:
                out.extend(parts[0])
            else:
                out.extend([XOR_FUNCTION, "("])
                for k, part in enumerate(parts):
                    if k:
                        out.append(",")
                    out.extend(["(", *part, ")"])
                out.append(")")
        return out, i

    rewritten, _ = group(0, None, 0)
    return rewritten

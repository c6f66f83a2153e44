"""Number-constrained decoding for transformers' ``generate``: a row asked for a count writes
digits and nothing else.

A question such as "How many wheels are there?" wants a number; a model free to write
anything may answer "several", "There are 2 cups." or, with random weights, noise. For such
a row the logits of every token that cannot continue a number are masked at each step, so
greedy decoding picks the most likely way to write one (as a grammar does for a served
model: :data:`GRAMMARS`). The language of a row is, by its :class:`NumberForm`::

    WHOLE (a count):          " "? [0-9]+                   then the end token
    DECIMAL (a measurement):  " "? [0-9]+ ("." [0-9]+)?     then the end token

— an optional leading space token (tokenizers that write " 2" as a space then a digit),
digits, and for a measurement an optional decimal part; the end token is allowed once a
whole number is written, so a row stops at its end token or at its token budget (a number
cut at the budget is still digits). The tokens that may appear are found once per tokenizer
(:meth:`NumberVocab.of`): those whose text is made of digits, a point or one space.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import torch


class NumberForm(StrEnum):
    WHOLE = "whole"  # a count: digits
    DECIMAL = "decimal"  # a measurement: digits, perhaps a decimal part


# GBNF of the same languages, for servers that take a grammar (vLLM's structured outputs)
GRAMMARS = {
    NumberForm.WHOLE: "root ::= [0-9]+\n",
    NumberForm.DECIMAL: 'root ::= [0-9]+ ("." [0-9]+)?\n',
}
# what a row of each form may have written so far, and what it may end with
_PREFIX = {
    NumberForm.WHOLE: re.compile(r" ?(\d+)?"),
    NumberForm.DECIMAL: re.compile(r" ?(\d+(\.\d*)?)?"),
}
_END = {NumberForm.WHOLE: re.compile(r" ?\d+"), NumberForm.DECIMAL: re.compile(r" ?\d+(\.\d+)?")}
_DIGITS = re.compile(r"\d+")
_PIECE = re.compile(r" |[\d.]+| [\d.]+")  # a token's text that can be part of a number


def shape(written: str) -> str:
    """What decides which tokens may follow a number's text: each run of digits as one
    digit (" 12.05" → " 0.0"), so the memos hold a handful of states, not every number."""
    return _DIGITS.sub("0", written)


def number_form(value: NumberForm | str | bool | None) -> NumberForm | None:
    """A row's form from what a caller passed: a form (or its name), True for any number
    (DECIMAL), False or None for a free answer."""
    if value is None or value is False:
        return None
    return NumberForm.DECIMAL if value is True else NumberForm(value)


@dataclass
class NumberVocab:
    """The tokens a number is written with (id → the text it adds) and the end tokens;
    :meth:`allowed` is memoised per text written so far."""

    texts: dict[int, str]
    ends: tuple[int, ...]
    _allowed: dict[tuple[NumberForm, str], list[int]] = field(default_factory=dict, repr=False)
    _masks: dict[tuple[Any, ...], torch.Tensor] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, tokenizer: Any, ends: Iterable[int]) -> NumberVocab:
        """The number tokens of ``tokenizer`` (special tokens excluded); ``ends``: the end
        tokens that finish a row."""
        special = set(getattr(tokenizer, "all_special_ids", None) or ())
        raw = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        texts: dict[int, str] = {}
        for i, token in enumerate(raw):
            if i in special or token is None:
                continue
            # a cheap filter before decoding: a digit or a point, or a marker of a space
            if not any(c.isdigit() or c == "." for c in token) and len(token) > 2:
                continue
            text = tokenizer.decode([i], clean_up_tokenization_spaces=False)
            if text and _PIECE.fullmatch(text):
                texts[i] = text
        return cls(texts, tuple(e for e in ends if e is not None))

    def written(self, tokens: Sequence[int]) -> str | None:
        """The text a row's new tokens wrote, or None once it wrote anything else (its end
        token: the row is finished)."""
        parts = []
        for t in tokens:
            text = self.texts.get(int(t))
            if text is None:
                return None
            parts.append(text)
        return "".join(parts)

    def allowed(self, written: str, form: NumberForm = NumberForm.DECIMAL) -> list[int]:
        """The tokens that may follow ``written`` in a number of ``form``: those that keep
        it a prefix of one, and the end tokens once it is one (memoised by the text's
        :func:`shape`: "12" and "7" allow the same tokens)."""
        written = shape(written)
        found = self._allowed.get((form, written))
        if found is None:
            prefix = _PREFIX[form]
            found = [i for i, text in self.texts.items() if prefix.fullmatch(written + text)]
            if _END[form].fullmatch(written):
                found += list(self.ends)
            self._allowed[(form, written)] = found
        return found

    def mask(self, written: str, form: NumberForm, size: int, device: torch.device) -> torch.Tensor:
        """True where a logit must be masked after ``written`` (a vocabulary of ``size``
        logits on ``device``): built once per shape, form, size and device, for every call."""
        key = (form, shape(written), size, device)
        found = self._masks.get(key)
        if found is None:
            keep = [i for i in self.allowed(written, form) if i < size]
            found = torch.ones(size, dtype=torch.bool)
            found[keep] = False
            found = self._masks[key] = found.to(device)
        return found


@functools.cache
def _processor_class() -> type:
    from transformers import LogitsProcessor

    class NumbersOnly(LogitsProcessor):
        """Masks, in the rows of a batch named in ``rows`` (row → form), every token that
        cannot continue a number of the row's form (see the module's docstring); the other
        rows are left as they are."""

        def __init__(
            self, vocab: NumberVocab, rows: Mapping[int, NumberForm], prompt_length: int
        ) -> None:
            self.vocab = vocab
            self.rows = dict(rows)
            self.prompt_length = prompt_length

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            if not self.rows:
                return scores
            # the new tokens of the batch in one transfer from the device, not one per row
            new = input_ids[:, self.prompt_length :].tolist()
            size, device = scores.shape[-1], scores.device
            for row, form in self.rows.items():
                written = self.vocab.written(new[row])
                if written is None:
                    continue  # finished: generate pads it from now on
                scores[row].masked_fill_(
                    self.vocab.mask(written, form, size, device), float("-inf")
                )
            return scores

    return NumbersOnly


def numbers_only(vocab: NumberVocab, rows: Mapping[int, NumberForm], prompt_length: int) -> Any:
    """A transformers ``LogitsProcessor`` that makes each row named in ``rows`` of a batch
    (whose prompts are ``prompt_length`` tokens, padding included) write a number of its
    form."""
    return _processor_class()(vocab, rows, prompt_length)


__all__ = ["GRAMMARS", "NumberForm", "NumberVocab", "number_form", "numbers_only", "shape"]

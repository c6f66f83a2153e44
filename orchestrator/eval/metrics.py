"""The benchmarks' own metrics, as their papers and official scripts define them.

- **VQA accuracy** (VQAv2, OK-VQA): an answer is right in proportion to how many of the ten
  annotators gave it, ``min(#humans that said it / 3, 1)``, averaged over the ten subsets of
  nine annotators (leave one out). Answers are normalised as the official evaluation script
  (GT-Vision-Lab/VQA ``vqaEval.py``) does: only when the annotators disagree, and then both
  the prediction and their answers (punctuation, then lower case, number words → digits,
  articles dropped, contractions restored); otherwise answers compare as written.
- **GQA** accuracy: exact match after normalisation (lower case, outer whitespace and a final
  full stop removed, inner whitespace collapsed) — GQA's answers are short, lower-case
  words, so this only forgives a program's capitalisation and punctuation.
- **NLVR2**: the statement's truth value; yes/true and no/false both count.
- **RefCOCO / RefCOCO+ / RefCOCOg**: a hit when the predicted box's IoU with the annotated
  box is at least 0.5.
- **Tagging** (and editing targets): precision, recall and F1 over (box, label) pairs; a
  prediction matches an unmatched annotation with the same label (case-insensitive) at IoU
  ≥ 0.5, pairs taken by descending IoU (one-to-one).

Boxes are ``(x0, y0, x1, y1)`` in pixels (COCO's ``[x, y, w, h]`` is converted by the loader).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

Box = tuple[float, float, float, float]

IOU_THRESHOLD = 0.5

# --- VQA answer normalisation (the official evaluation's steps) -------------------------

_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
          "@", "`", ",", "?", "!"]  # fmt: skip
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
# a full stop not followed by a digit; the official script's look-behind is written
# "(?!<=\d)", which never matches, so "1." loses its stop too
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_NUMBER_WORDS = dict(
    zip("none zero one two three four five six seven eight nine ten".split(),
        "0 0 1 2 3 4 5 6 7 8 9 10".split(), strict=True)
)  # fmt: skip
_ARTICLES = {"a", "an", "the"}
# contractions written without their apostrophe, restored (as the official map does)
_CONTRACTIONS = {
    word.replace("'", ""): word
    for word in (
        "ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't "
        "hadn't've hasn't haven't he'd he'd've he'll he's how'd how'll how's i'd i'd've i'll "
        "i'm i've isn't it'd it'd've it'll it's let's ma'am mightn't mightn't've might've "
        "mustn't must've needn't not've o'clock oughtn't shan't she'd she'd've she'll she's "
        "should've shouldn't shouldn't've somebody'd somebody'd've somebody'll somebody's "
        "someone'd someone'd've someone'll someone's something'd something'd've "
        "something'll that's there'd there'd've there're there's they'd they'd've they'll "
        "they're they've twas wasn't we'd we'd've we'll we're we've weren't what'll what're "
        "what's what've when's where'd where's where've who'd who'd've who'll who're who's "
        "who've why'll why're why's won't would've wouldn't wouldn't've y'all y'all'll "
        "y'all'd've you'd you'd've you'll you're you've"
    ).split()
    if "'" in word
}


def vqa_punctuation(text: str) -> str:
    """Punctuation as the official VQA evaluation treats it: removed where it touches a
    space (or the text has a comma between digits), else replaced by a space; full stops
    not before a digit removed."""
    out = text
    touching = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for p in _PUNCT:
        if touching or f"{p} " in text or f" {p}" in text:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    # the official script passes re.UNICODE (32) as sub's count: at most 32 stops go
    return _PERIOD.sub("", out, count=32)


def vqa_digits_articles(text: str) -> str:
    """Lower case; number words to digits; articles dropped; contractions restored."""
    words = []
    for word in text.lower().split():
        word = _NUMBER_WORDS.get(word, word)
        if word not in _ARTICLES:
            words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def _clean(answer: str) -> str:
    return answer.replace("\n", " ").replace("\t", " ").strip()


def vqa_normalize(answer: str) -> str:
    """An answer normalised as the official VQA evaluation does when annotators disagree."""
    return vqa_digits_articles(vqa_punctuation(_clean(answer)))


def vqa_accuracy(prediction: str | None, answers: Sequence[str]) -> float:
    """VQA accuracy of ``prediction`` against the human ``answers`` (ten in VQAv2/OK-VQA):
    the mean over leave-one-out subsets of ``min(matches / 3, 1)``."""
    if prediction is None or not answers:
        return 0.0
    humans = [_clean(a) for a in answers]
    guess = _clean(prediction)
    if len(set(humans)) > 1:
        humans = [vqa_normalize(a) for a in humans]
        guess = vqa_normalize(guess)
    total = 0.0
    for left_out in range(len(humans)):
        others = humans[:left_out] + humans[left_out + 1 :]
        total += min(1.0, sum(a == guess for a in others) / 3)
    return total / len(humans)


# --- GQA and NLVR2 ----------------------------------------------------------------------


def gqa_normalize(answer: str) -> str:
    return " ".join(answer.strip().lower().rstrip(".").split())


def gqa_match(prediction: str | None, answer: str) -> float:
    """1.0 when the normalised answers are equal, else 0.0."""
    if prediction is None:
        return 0.0
    return float(gqa_normalize(prediction) == gqa_normalize(answer))


_TRUTH = {"yes": True, "true": True, "no": False, "false": False}


def truth_value(text: str | None) -> bool | None:
    """yes/true → True, no/false → False (case and a final stop ignored), else None."""
    if text is None:
        return None
    return _TRUTH.get(text.strip().lower().rstrip("."))


def nlvr2_match(prediction: str | None, label: bool) -> float:
    return float(truth_value(prediction) is label)


# --- boxes ------------------------------------------------------------------------------


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes; 0.0 when they only touch,
    are disjoint, or either has no area."""
    ax0, ay0, ax1, ay1 = a
    bx0, by0, bx1, by1 = b
    inter_w = min(ax1, bx1) - max(ax0, bx0)
    inter_h = min(ay1, by1) - max(ay0, by0)
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    inter = inter_w * inter_h
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def box_hit(prediction: Box | None, answer: Box, threshold: float = IOU_THRESHOLD) -> float:
    """RefCOCO's accuracy for one expression: 1.0 when IoU ≥ ``threshold``."""
    if prediction is None:
        return 0.0
    return float(iou(prediction, answer) >= threshold)


@dataclass(frozen=True)
class PairCounts:
    """Matched, predicted and annotated (box, label) pairs; adds up over items."""

    matched: int
    predicted: int
    annotated: int

    def __add__(self, other: PairCounts) -> PairCounts:
        return PairCounts(
            self.matched + other.matched,
            self.predicted + other.predicted,
            self.annotated + other.annotated,
        )

    @property
    def precision(self) -> float:
        """matched / predicted (1.0 when nothing was predicted and nothing annotated)."""
        if self.predicted == 0:
            return 1.0 if self.annotated == 0 else 0.0
        return self.matched / self.predicted

    @property
    def recall(self) -> float:
        """matched / annotated (1.0 when nothing was annotated and nothing predicted)."""
        if self.annotated == 0:
            return 1.0 if self.predicted == 0 else 0.0
        return self.matched / self.annotated

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def match_pairs(
    predicted: Sequence[tuple[Box, str | None]],
    annotated: Sequence[tuple[Box, str | None]],
    threshold: float = IOU_THRESHOLD,
) -> PairCounts:
    """One-to-one matching of (box, label) pairs: same label (case-insensitive; an
    annotation without a label accepts any) and IoU ≥ ``threshold``, best IoU first."""
    candidates = []
    for i, (pbox, plabel) in enumerate(predicted):
        for j, (abox, alabel) in enumerate(annotated):
            if alabel is not None and (plabel or "").strip().lower() != alabel.strip().lower():
                continue
            overlap = iou(pbox, abox)
            if overlap >= threshold:
                candidates.append((overlap, i, j))
    used_p: set[int] = set()
    used_a: set[int] = set()
    for _overlap, i, j in sorted(candidates, key=lambda c: (-c[0], c[1], c[2])):
        if i not in used_p and j not in used_a:
            used_p.add(i)
            used_a.add(j)
    return PairCounts(len(used_p), len(predicted), len(annotated))

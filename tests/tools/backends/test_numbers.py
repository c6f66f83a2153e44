"""Number-constrained decoding's pieces on their own: which tokens may follow what a row
wrote, and the logits processor masking only the rows asked for a number."""

from __future__ import annotations

import torch

from tools.backends.numbers import NumberForm, NumberVocab, numbers_only, shape

# a toy vocabulary: ids 0-3 write numbers, 9 is the end token, the rest are words
VOCAB = NumberVocab({0: "1", 1: "2", 2: " ", 3: "."}, ends=(9,))


def test_what_may_follow_what_was_written() -> None:
    assert sorted(VOCAB.allowed("", NumberForm.WHOLE)) == [0, 1, 2]  # digits or one space
    assert sorted(VOCAB.allowed(" ", NumberForm.WHOLE)) == [0, 1]  # not a second space
    assert sorted(VOCAB.allowed("12", NumberForm.WHOLE)) == [0, 1, 9]  # a whole number may end
    assert sorted(VOCAB.allowed("12", NumberForm.DECIMAL)) == [0, 1, 3, 9]  # or go on with "."
    assert sorted(VOCAB.allowed("1.", NumberForm.DECIMAL)) == [0, 1]  # "1." is not a number yet
    assert VOCAB.written([0, 1]) == "12" and VOCAB.written([0, 9]) is None  # ended


def test_only_the_rows_asked_for_a_number_are_masked() -> None:
    prompt = 2
    ids = torch.tensor([[5, 5, 0], [5, 5, 7], [5, 5, 9]])  # row 2 already wrote its end token
    scores = torch.zeros(3, 12)  # the model's logits are wider than the tokenizer's vocabulary
    processor = numbers_only(VOCAB, {0: NumberForm.WHOLE, 2: NumberForm.WHOLE}, prompt)
    out = processor(ids, scores.clone())
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [0, 1, 9]  # "1" → digits or end
    assert torch.isfinite(out[1]).all()  # a free answer is left as it is
    assert torch.isfinite(out[2]).all()  # a finished row too (generate pads it)
    again = processor(ids, scores.clone())
    assert torch.equal(again, out)


def test_numbers_that_allow_the_same_tokens_share_one_mask() -> None:
    """What may follow depends on the text's shape only, so the masks (kept by the
    vocabulary, for every call) are a handful, not one per number written."""
    assert shape(" 12.05") == " 0.0" and shape("7") == shape("12") == "0"
    cpu = torch.device("cpu")
    assert VOCAB.mask("12", NumberForm.WHOLE, 12, cpu) is VOCAB.mask("7", NumberForm.WHOLE, 12, cpu)
    assert VOCAB.allowed("12", NumberForm.WHOLE) == VOCAB.allowed("7", NumberForm.WHOLE)
    assert not torch.equal(  # a decimal point may follow a measurement, not a count
        VOCAB.mask("7", NumberForm.WHOLE, 12, cpu), VOCAB.mask("7", NumberForm.DECIMAL, 12, cpu)
    )

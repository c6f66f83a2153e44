"""LLaVA and Molmo2 backends on tiny random-weight checkpoints (tiny_spec, real loader), and
the pure Molmo pointing parser on hand-written answers."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch

from tests.support.backends import CPU, CountingImageProcessor, noise_image
from tools.backends import backend_class
from tools.backends.base import Placement
from tools.backends.numbers import NumberForm
from tools.backends.vlm import ANSWER_SUFFIX, LlavaBackend, Molmo2Backend, parse_points
from tools.errors import ModelError, ToolInputError
from tools.pool import ModelPool
from tools.settings import ModelSettings, ModelSpec
from tools.types import Point, PointList

FAMILIES = [LlavaBackend, Molmo2Backend]


IMAGES = [noise_image(0, 50, 40), noise_image(1, 57, 70), noise_image(2, 64, 100)]
QUESTIONS = ["What is it?", "How many cats are there in the picture?", "Is the car red?"]


# --- files, locate, load ---------------------------------------------------------------------


@pytest.mark.parametrize("cls", FAMILIES)
def test_registry_and_pointing_flag(cls: type) -> None:
    assert backend_class(cls.family) is cls
    assert cls.supports_pointing is (cls is Molmo2Backend)
    assert hasattr(cls, "point") is cls.supports_pointing


@pytest.mark.parametrize("cls", FAMILIES)
def test_tiny_spec_is_a_save_pretrained_directory(
    cls: type, specs: dict[str, ModelSpec], settings: ModelSettings
) -> None:
    spec = specs[cls.family]
    directory = Path(spec.model)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (directory / name).is_file(), name
    located = cls.locate(spec, settings)
    assert located.present and located.where == str(directory)
    size = cls.estimate_bytes(spec, settings)
    assert size is not None and 100_000 < size < 10_000_000


@pytest.mark.parametrize("cls", FAMILIES)
def test_tiny_spec_is_deterministic(cls: type, specs: dict[str, ModelSpec], tmp_path: Path) -> None:
    again = Path(cls.tiny_spec(tmp_path).model)
    for name in ("model.safetensors", "tokenizer.json"):
        old = (Path(specs[cls.family].model) / name).read_bytes()
        assert hashlib.sha256((again / name).read_bytes()).digest() == hashlib.sha256(old).digest()


@pytest.mark.parametrize("cls", FAMILIES)
def test_locate_and_load_missing(cls: type, settings: ModelSettings, tmp_path: Path) -> None:
    assert not cls.locate(ModelSpec(family=cls.family, model=str(tmp_path / "x")), settings).present
    hub = cls.locate(ModelSpec(family=cls.family, model="vischain-test/no-such-vlm"), settings)
    assert not hub.present and "huggingface-cli download" in hub.hint
    assert not cls.locate(ModelSpec(family=cls.family), settings).present  # default id, not cached
    with pytest.raises(ModelError, match=cls.family):
        cls.load(ModelSpec(family=cls.family, model=str(tmp_path)), CPU, settings)


@pytest.mark.parametrize("cls", FAMILIES)
def test_loaded_on_the_placement(cls: type, loaded: dict[str, object]) -> None:
    backend = loaded[cls.family]
    assert {p.device.type for p in backend.model.parameters()} == {"cpu"}
    assert {p.dtype for p in backend.model.parameters()} == {torch.float32}
    assert backend.tokenizer.padding_side == "left"
    assert backend.memory_bytes() > 100_000


@pytest.mark.parametrize("cls", FAMILIES)
def test_half_precision_placement(
    cls: type, specs: dict[str, ModelSpec], settings: ModelSettings
) -> None:
    backend = cls.load(specs[cls.family], Placement("cpu", torch.bfloat16), settings)
    assert {p.dtype for p in backend.model.parameters()} == {torch.bfloat16}
    answers = backend.answer(list(zip(IMAGES[:2], QUESTIONS[:2], strict=True)), max_new_tokens=4)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


# --- prompts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", FAMILIES)
def test_prompt_holds_question_suffix_and_image_tokens(
    cls: type, loaded: dict[str, object]
) -> None:
    backend = loaded[cls.family]
    text = backend.question_prompt("  What color is the bus? ")
    assert text == f"What color is the bus?\n{ANSWER_SUFFIX}"
    prompt = backend.chat_prompt(text)
    assert backend.processor.image_token in prompt and text in prompt
    assert prompt.index(backend.processor.image_token) < prompt.index("What color")
    # the processor expands the placeholder into one token per image feature
    inputs = backend.processor(images=[IMAGES[1].pil], text=[prompt], return_tensors="pt")
    with torch.inference_mode():
        pictures = backend._pictures(inputs, 1)
        features = backend._image_features([IMAGES[1]], pictures).pooler_output[0]
    image_token_id = backend.model.config.image_token_id
    assert int((inputs["input_ids"] == image_token_id).sum()) == features.shape[0] > 1
    assert "What color is the bus?" in backend.tokenizer.decode(inputs["input_ids"][0])


def test_plain_prompts_without_a_chat_template(loaded: dict[str, object]) -> None:
    llava, molmo = loaded["llava"], loaded["molmo2"]
    assert llava._plain_prompt("Hi?") == "USER: <image>\nHi? ASSISTANT:"
    assert molmo._plain_prompt("Hi?") == "<|image|>User: Hi? Assistant:"


# --- generation ------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", FAMILIES)
def test_answer_types_lengths_and_determinism(cls: type, loaded: dict[str, object]) -> None:
    backend = loaded[cls.family]
    requests = list(zip(IMAGES, QUESTIONS, strict=True))
    answers = backend.answer(requests, max_new_tokens=6)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    assert all(a == a.strip() for a in answers)
    assert any(answers)  # random weights write garbage, but they write something
    assert backend.answer(requests, max_new_tokens=6) == answers
    assert backend.answer([], max_new_tokens=6) == []


@pytest.mark.parametrize("cls", FAMILIES)
def test_batch_equals_singles(cls: type, loaded: dict[str, object]) -> None:
    """Images of different sizes and prompts of different lengths (left padding)."""
    backend = loaded[cls.family]
    requests = list(zip(IMAGES, QUESTIONS, strict=True))
    batch = backend.answer(requests, max_new_tokens=8)
    singles = [backend.answer([r], max_new_tokens=8)[0] for r in requests]
    assert batch == singles
    captions = backend.caption(IMAGES, max_new_tokens=8)
    assert captions == [backend.caption([i], max_new_tokens=8)[0] for i in IMAGES]


@pytest.mark.parametrize("cls", FAMILIES)
def test_prompts_are_padded_to_length_buckets_without_changing_answers(
    cls: type, loaded: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Left padding to a multiple of ``length_bucket`` tokens: the shapes a GPU sees repeat,
    and the attention mask keeps every answer what it was without the extra padding."""
    backend = loaded[cls.family]
    lengths: list[int] = []
    generate = backend.model.generate

    def spy(**kwargs):
        lengths.append(int(kwargs["input_ids"].shape[1]))
        return generate(**kwargs)

    monkeypatch.setattr(backend.model, "generate", spy)
    requests = list(zip(IMAGES, QUESTIONS, strict=True))
    monkeypatch.setattr(backend, "length_bucket", 1)
    exact = backend.answer(requests, max_new_tokens=8)
    exact_singles = [backend.answer([r], max_new_tokens=8)[0] for r in requests]
    monkeypatch.setattr(backend, "length_bucket", 16)
    bucketed = backend.answer(requests, max_new_tokens=8)
    bucketed_singles = [backend.answer([r], max_new_tokens=8)[0] for r in requests]
    assert bucketed == exact and bucketed_singles == exact_singles == exact
    assert len(set(lengths[:4])) > 1  # unpadded: the single prompts differ in length
    assert all(n % 16 == 0 for n in lengths[4:])


@pytest.mark.parametrize("cls", FAMILIES)
def test_token_limit(cls: type, loaded: dict[str, object]) -> None:
    backend = loaded[cls.family]
    requests = list(zip(IMAGES, QUESTIONS, strict=True))
    for limit in (1, 5):
        before = backend.stats["generated_tokens"]
        backend.answer(requests, max_new_tokens=limit)
        generated = backend.stats["generated_tokens"] - before
        assert len(requests) <= generated <= len(requests) * limit
    with pytest.raises(ValueError):
        backend.answer(requests, max_new_tokens=0)


@pytest.mark.parametrize("cls", FAMILIES)
def test_a_prompt_past_the_models_context_is_refused_before_generating(
    cls: type, loaded: dict[str, object]
) -> None:
    backend = loaded[cls.family]
    limit = backend.model.config.get_text_config().max_position_embeddings
    calls = backend.stats["generate_calls"]
    with pytest.raises(ToolInputError, match=f"holds {limit:,} tokens; this prompt takes"):
        backend.answer([(IMAGES[0], "why " * limit)], max_new_tokens=4)
    assert backend.stats["generate_calls"] == calls  # refused before the model ran
    assert len(backend.answer([(IMAGES[0], "why " * 8)], max_new_tokens=4)) == 1


@pytest.mark.parametrize("cls", FAMILIES)
def test_inputs_are_prepared_on_the_callers_thread(
    cls: type, specs: dict[str, ModelSpec], settings: ModelSettings
) -> None:
    """The processor (tokenising, resizing) runs where the call came from, so it overlaps
    the batch in flight; only generate runs on the model's own thread."""
    import threading

    backend = cls.load(specs[cls.family], CPU, settings)
    backend.threaded = True
    seen: dict[str, list[str]] = {"processor": [], "generate": []}
    processor, generate = backend.processor, backend.model.generate

    class Spy:
        def __getattr__(self, name: str) -> object:
            return getattr(processor, name)

        def __call__(self, *args: object, **kwargs: object) -> object:
            seen["processor"].append(threading.current_thread().name)
            return processor(*args, **kwargs)

    def spy_generate(**kwargs: object) -> object:
        seen["generate"].append(threading.current_thread().name)
        return generate(**kwargs)

    backend.processor = Spy()
    backend.model.generate = spy_generate
    try:
        backend.answer(list(zip(IMAGES, QUESTIONS, strict=True)), max_new_tokens=2)
    finally:
        backend.stop_model_thread()
    assert seen["processor"] == [threading.current_thread().name]
    assert seen["generate"] == [backend.model_thread().name]


@pytest.mark.parametrize("cls", FAMILIES)
def test_each_row_stops_at_its_own_budget(cls: type, loaded: dict[str, object]) -> None:
    """Per-row budgets in one batch: each row is what it is alone with its own budget, and
    the batch generates no more than the budgets add up to (not the largest for every row)."""
    backend = loaded[cls.family]
    requests = list(zip(IMAGES, QUESTIONS, strict=True))
    budgets = [1, 7, 3]
    before = backend.stats["generated_tokens"]
    together = backend.answer(requests, max_new_tokens=budgets)
    assert backend.stats["generated_tokens"] - before <= sum(budgets)
    alone = [
        backend.answer([r], max_new_tokens=b)[0] for r, b in zip(requests, budgets, strict=True)
    ]
    assert together == alone
    with pytest.raises(ValueError, match="budgets"):
        backend.answer(requests, max_new_tokens=[1, 2])


@pytest.mark.parametrize("cls", FAMILIES)
def test_cached_image_path_equals_transformers_generate(
    cls: type, loaded: dict[str, object]
) -> None:
    """Our path (cached image features through mm_encoder_outputs) gives exactly what the
    model's own generate gives from pixels."""
    backend = loaded[cls.family]
    prompts = [backend.chat_prompt(backend.question_prompt(q)) for q in QUESTIONS]
    inputs = backend.processor(
        images=[i.pil for i in IMAGES], text=prompts, padding=True, return_tensors="pt"
    )
    with torch.inference_mode():
        out = backend.model.generate(**inputs, max_new_tokens=6, do_sample=False)
    reference = [
        t.strip()
        for t in backend.tokenizer.batch_decode(
            out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
        )
    ]
    assert backend.answer(list(zip(IMAGES, QUESTIONS, strict=True)), max_new_tokens=6) == reference


@pytest.mark.parametrize("cls", FAMILIES)
def test_images_are_encoded_once(cls: type, specs: dict[str, ModelSpec], tmp_path: Path) -> None:
    pool = ModelPool(ModelSettings(cache_dir=tmp_path, roles={"vlm": [specs[cls.family]]}))
    backend = pool.get("vlm")
    assert isinstance(backend, cls) and backend.cache is pool.features
    same = [(IMAGES[0], QUESTIONS[0]), (IMAGES[0], QUESTIONS[1]), (IMAGES[1], QUESTIONS[2])]
    first = backend.answer(same, max_new_tokens=4)
    assert backend.stats["image_encoder"] == 2  # the repeated image once
    again = backend.answer(same, max_new_tokens=4)
    backend.caption([IMAGES[1], IMAGES[0]], max_new_tokens=4)
    assert backend.stats["image_encoder"] == 2
    assert again == first
    backend.answer([(IMAGES[2], "What?")], max_new_tokens=4)
    assert backend.stats["image_encoder"] == 3


@pytest.mark.parametrize("cls", FAMILIES)
@pytest.mark.parametrize("which", [[0, 1, 2], [2, 0], [1], [0, 2]])
def test_each_rows_share_of_the_picture_inputs_is_the_processors_own(
    cls: type, loaded: dict[str, object], which: list[int]
) -> None:
    """The processor's picture inputs for a batch, split per row and joined again for any
    of its pictures, are exactly what the image processor gives those pictures alone
    (LLaVA: a pixel row each; Molmo2: crops, pooling rows and grids, with the pooling's
    patch indices moved)."""
    backend = loaded[cls.family]
    prompts = [backend.chat_prompt(q) for q in QUESTIONS]
    inputs = backend.processor(
        images=[i.pil for i in IMAGES], text=prompts, padding=True, return_tensors="pt"
    )
    shares = backend._pictures(inputs, len(IMAGES))
    assert shares is not None and len(shares) == len(IMAGES)
    alone = backend.processor.image_processor.inner(
        images=[IMAGES[i].pil for i in which], return_tensors="pt"
    )
    joined = backend.picture_layout.join([shares[i] for i in which])
    assert set(joined) == set(alone) and "pixel_values" in joined
    for key, value in alone.items():
        assert torch.equal(joined[key], value), key


@pytest.mark.parametrize("cls", FAMILIES)
def test_a_new_picture_is_preprocessed_once(cls: type, loaded: dict[str, object]) -> None:
    """The vision encoder takes the rows' own picture inputs: a batch of new pictures
    calls the image processor once (for the prompts), not again to encode them."""
    backend = loaded[cls.family]
    wrapper = backend.processor.image_processor
    counter = CountingImageProcessor(wrapper.inner)
    requests = [(noise_image(40 + i, 48, 40 + 8 * i), q) for i, q in enumerate(QUESTIONS)]
    expected = backend.answer(requests, max_new_tokens=5)
    wrapper.inner = counter
    try:
        assert backend.answer(requests, max_new_tokens=5) == expected
    finally:
        wrapper.inner = counter.inner
    assert counter.calls == [len(requests)]


@pytest.mark.parametrize("cls", FAMILIES)
def test_pictures_of_a_layout_not_known_are_preprocessed_for_the_encoder(
    cls: type, loaded: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = loaded[cls.family]
    requests = list(zip(IMAGES, QUESTIONS, strict=True))
    expected = backend.answer(requests, max_new_tokens=6)
    monkeypatch.setattr(backend, "_pictures", lambda inputs, n: None)
    assert backend.answer(requests, max_new_tokens=6) == expected


@pytest.mark.parametrize("cls", FAMILIES)
def test_from_objects(cls: type, loaded: dict[str, object]) -> None:
    source = loaded[cls.family]
    wrapped = cls.from_objects(source.model, source.processor)
    assert wrapped.device == "cpu" and wrapped.dtype == torch.float32
    requests = list(zip(IMAGES[:2], QUESTIONS[:2], strict=True))
    assert wrapped.answer(requests, max_new_tokens=5) == source.answer(requests, max_new_tokens=5)


NUMBER = re.compile(r"\d+(\.\d+)?")


@pytest.mark.parametrize("cls", FAMILIES)
def test_rows_asked_for_a_number_write_digits(cls: type, loaded: dict[str, object]) -> None:
    """Random weights write noise; rows flagged as numbers are decoded under the digits
    constraint and write one (perhaps cut at the budget), in the batch as alone; the other
    rows are what they are without any flag."""
    backend = loaded[cls.family]
    requests = list(zip(IMAGES, QUESTIONS, strict=True))
    free = backend.answer(requests, max_new_tokens=10)
    assert not any(NUMBER.fullmatch(a) for a in free)  # what the constraint changes
    flags = [False, True, True]
    answers = backend.answer(requests, max_new_tokens=10, numbers=flags)
    assert answers[0] == free[0]
    assert all(NUMBER.fullmatch(a.rstrip(".")) for a in answers[1:]), answers
    whole = backend.answer(requests, max_new_tokens=10, numbers=[None, "whole", "decimal"])
    assert whole[0] == free[0] and whole[1].isdigit() and whole[2] == answers[2]
    alone = [
        backend.answer([r], max_new_tokens=10, numbers=[f])[0]
        for r, f in zip(requests, flags, strict=True)
    ]
    assert alone == answers
    with pytest.raises(ValueError, match="number flags"):
        backend.answer(requests, max_new_tokens=4, numbers=[True])


def test_number_vocab_allows_only_a_number_then_the_end(loaded: dict[str, object]) -> None:
    backend = loaded["llava"]
    vocab = backend.number_vocab()
    ends = set(vocab.ends)
    assert ends == {backend.model.generation_config.eos_token_id}
    texts = set(vocab.texts.values())
    assert {str(d) for d in range(10)} <= texts and "." in texts
    assert all(NUMBER.fullmatch(t.strip()) or t.strip() in ("", ".") for t in texts)

    def texts_after(written: str) -> set[str]:
        return {vocab.texts.get(i, "<end>") for i in vocab.allowed(written)}

    assert "<end>" not in texts_after("") and "." not in texts_after("") and " " in texts_after("")
    assert {"<end>", ".", "7"} <= texts_after("12") and " " not in texts_after("12")
    assert "<end>" not in texts_after("12.") and "." not in texts_after("12.")
    assert "." not in texts_after("1.5") and "<end>" in texts_after("1.5")
    whole = {vocab.texts.get(i, "<end>") for i in vocab.allowed("12", NumberForm.WHOLE)}
    assert "<end>" in whole and "7" in whole and "." not in whole
    assert vocab.written([vocab.ends[0]]) is None


def test_invalid_requests(loaded: dict[str, object]) -> None:
    backend = loaded["llava"]
    with pytest.raises(ValueError):
        backend.generate([IMAGES[0]], ["a", "b"], max_new_tokens=3)


def test_molmo2_point_returns_point_lists(loaded: dict[str, object]) -> None:
    backend = loaded["molmo2"]
    requests = [(IMAGES[0], "cat"), (IMAGES[1], " red car ")]
    found = backend.point(requests, max_new_tokens=8)
    assert len(found) == 2 and all(isinstance(p, PointList) for p in found)
    for points, (image, obj) in zip(found, requests, strict=True):  # garbage text: often none
        for p in points:
            assert p.label == obj.strip()
            assert 0 <= p.x <= image.width and 0 <= p.y <= image.height
    prompt = backend.chat_prompt("Point to the red car.")
    assert "Point to the red car." in prompt


# --- parse_points ----------------------------------------------------------------------------


def _xy(points: PointList) -> list[tuple[float, float, str | None]]:
    return [(round(p.x, 3), round(p.y, 3), p.label) for p in points]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Molmo2: image index, then "id x y" triples in thousandths
        ('<points coords="1 1 460 588 2 504 740">dog</points>', [(92.0, 117.6, "dog"), (100.8, 148.0, "dog")]),
        ('<points coords="1 1 500 500">cat</points>', [(100.0, 100.0, "cat")]),
        ('<points coords="1 1 000 1000"/>', [(0.0, 200.0, None)]),
        ('<point coords="1 1 250 750">a cup</point>', [(50.0, 150.0, "a cup")]),
        # several images joined by ";" (ids continue); a tab works too
        ('<points coords="1 1 100 200 2 500 500;3 3 900 900">cat</points>',
         [(20.0, 40.0, "cat"), (100.0, 100.0, "cat"), (180.0, 180.0, "cat")]),
        ('<points coords="1 1 100 200\t2 2 300 400">x</points>', [(20.0, 40.0, "x"), (60.0, 80.0, "x")]),
        # bare "id x y" triples and a bare "x y" pair
        ('<points coords="1 125 875"/>', [(25.0, 175.0, None)]),
        ('<points coords="125 875">p</points>', [(25.0, 175.0, "p")]),
        # decimals, extra attributes, spacing and case
        ("<POINTS  coords = '1 1 500.5 250' alt=\"dogs\" >dogs</POINTS>", [(100.1, 50.0, "dogs")]),
        # Molmo v1: percent, alt or inner text as label
        ('<point x="10.5" y="20.1" alt="dog">dog</point>', [(21.0, 40.2, "dog")]),
        ('<point x="50" y="50" alt="the dog"></point>', [(100.0, 100.0, "the dog")]),
        ('<point x="50" y="100"/>', [(100.0, 200.0, None)]),
        ('<points x1="10" y1="20" x2="30" y2="40" alt="dogs">dogs</points>', [(20.0, 40.0, "dogs"), (60.0, 80.0, "dogs")]),
        # text around the tags, several tags
        ('Sure! <point x="0" y="0" alt="a">a</point> and <points coords="1 1 1000 1000">b</points>.',
         [(0.0, 0.0, "a"), (200.0, 200.0, "b")]),
    ],
)  # fmt: skip
def test_parse_points_variants(text: str, expected: list[tuple[float, float, str | None]]) -> None:
    assert _xy(parse_points(text, 200, 200)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "There are none.",
        "The dog is at the left.",
        '<points coords="garbage">dog</points>',
        '<points coords="1 1 abc 500">dog</points>',
        '<points coords="1 1 500">dog</points>',  # incomplete triple
        '<points coords="1 1 1200 500">dog</points>',  # outside the image
        '<points coords="1 1 -5 500">dog</points>',
        '<point x="150" y="20" alt="dog">dog</point>',  # percent above 100
        '<point x="abc" y="20" alt="dog">dog</point>',
        '<point y="20" alt="dog">dog</point>',
        '<points coords="1 1 460 588',  # cut off by the token limit
        "<point x=10 y=20>dog</point>",  # unquoted attributes
        "<box>1 2 3 4</box>",
    ],
)
def test_parse_points_ignores_garbage(text: str) -> None:
    assert parse_points(text, 640, 480) == PointList()


def test_parse_points_label_and_scaling() -> None:
    text = '<points coords="1 1 250 500 2 750 1000">two dogs</points>'
    points = parse_points(text, 640, 480, label="dog")
    assert points == PointList((Point(160.0, 240.0, "dog"), Point(480.0, 480.0, "dog")))
    # a malformed group is skipped, the good one kept
    mixed = parse_points('<points coords="1 1 2;2 3 100 100">x</points>', 1000, 1000)
    assert _xy(mixed) == [(100.0, 100.0, "x")]

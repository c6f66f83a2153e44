"""Vision-language models through transformers: LLaVA-1.5 and Molmo2.

Both answer short questions about an image and caption it; Molmo2 also points at things
(its answer holds coordinates, which :func:`parse_points` turns into pixels).

A batch is generated in one ``generate`` call with left padding and greedy decoding, so a
batch of N gives what N single calls give; each row stops at its end token or its own token
budget. Concurrent calls — Vqa, captions, pointing, from any program — share one batch
through the model's ``generate`` lane (:mod:`tools.backends.coalesce`). The vision tower
runs once per distinct image: its output (the projected image tokens) is cached by content
hash, and ``generate`` gets it through transformers' ``mm_encoder_outputs`` instead of
pixels, so several questions about one picture encode it once.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..errors import ModelError, ToolInputError
from ..settings import ModelSpec
from ..types import Image, Point, PointList
from .base import Placement, token_budgets
from .hf import HFBackend, redraw, seeded
from .image_processing import MOLMO2_CROPS, PER_PICTURE, PictureLayout, with_distinct_pictures
from .numbers import NumberForm, NumberVocab, number_form, numbers_only
from .threads import on_model_thread

log = logging.getLogger("vischain.models")

# LLaVA-1.5's prompts for short VQA answers and for short captions.
ANSWER_SUFFIX = "Answer the question using a single word or phrase."
CAPTION_PROMPT = "Provide a one-sentence caption for the provided image."
POINT_PROMPT = "Point to the {object}."


# --- pointing output -------------------------------------------------------------------------

_TAG = re.compile(r"<(points?)\b([^<>]*?)/?>(?:([^<]*)</\1\s*>)?", re.IGNORECASE)
_ATTR = re.compile(r"([A-Za-z_][\w-]*)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
_COORD = re.compile(r"^\d{3,4}(?:\.\d+)?$")
_GROUP_SEP = re.compile(r"[;\t:,]")


def _numbers(text: str) -> list[float] | None:
    parts = text.split()
    if not parts or not all(_NUMBER.match(p) for p in parts):
        return None
    return [float(p) for p in parts]


def _coords_points(coords: str) -> list[tuple[float, float]]:
    """(x, y) pairs on the 0-1000 scale from a Molmo2 ``coords`` value.

    Groups are separated by ";" (also tab, ":" or ","); a group is an image index (a
    timestamp for video) followed by triples "point_id x y", where x and y are written with
    three or four digits ("050", "1000"), as Molmo2 does. A group of bare triples or of one
    "x y" pair is accepted too; anything else is ignored.
    """
    points = []
    for group in _GROUP_SEP.split(coords):
        parts = group.split()
        if not parts or not all(_NUMBER.match(p) for p in parts):
            continue
        if len(parts) == 2:
            pairs = [(parts[0], parts[1])]
        elif len(parts) % 3 in (0, 1):
            body = parts[len(parts) % 3 :]  # drop the image index / timestamp
            pairs = [(body[k + 1], body[k + 2]) for k in range(0, len(body), 3)]
        else:
            continue
        for x, y in pairs:
            if _COORD.match(x) and _COORD.match(y):
                points.append((float(x), float(y)))
    return points


def _xy_points(attrs: dict[str, str]) -> list[tuple[float, float]]:
    """(x, y) pairs in percent from Molmo v1 attributes: x/y, or x1/y1, x2/y2, ..."""
    points = []
    suffixes = [""] + [str(k) for k in range(1, 1000) if f"x{k}" in attrs]
    for suffix in suffixes:
        x, y = attrs.get(f"x{suffix}"), attrs.get(f"y{suffix}")
        if x is None or y is None:
            continue
        nums = _numbers(f"{x} {y}")
        if nums is not None and len(nums) == 2:
            points.append((nums[0], nums[1]))
    return points


def parse_points(text: str, width: int, height: int, label: str | None = None) -> PointList:
    """The points in a Molmo answer, in pixels of a ``width`` × ``height`` image.

    Accepts Molmo2's ``<points coords="1 1 460 588 2 504 740">dog</points>`` (coordinates
    in thousandths of width/height, see :func:`_coords_points`) and Molmo v1's
    ``<point x="10.5" y="20.1" alt="dog">dog</point>`` / ``<points x1=".." y1=".." x2=..>``
    (in percent). Tags may be self-closing; unknown attributes, malformed numbers and
    coordinates outside the image are ignored. Each point is labelled ``label`` if given,
    else with the tag's text or its ``alt``.
    """
    found: list[Point] = []
    for match in _TAG.finditer(text):
        attrs = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
                 for m in _ATTR.finditer(match.group(2))}  # fmt: skip
        inner = (match.group(3) or "").strip()
        name = label if label is not None else (inner or attrs.get("alt", "").strip() or None)
        if "coords" in attrs:
            pairs, scale = _coords_points(attrs["coords"]), 1000.0
        else:
            pairs, scale = _xy_points(attrs), 100.0
        for x, y in pairs:
            if 0.0 <= x <= scale and 0.0 <= y <= scale:
                found.append(Point(x / scale * width, y / scale * height, name))
    return PointList(tuple(found))


# --- helpers ---------------------------------------------------------------------------------


def _first(token: int | list[int] | None) -> int | None:
    """One token id from a generation config's id or list of ids."""
    if isinstance(token, list):
        return token[0] if token else None
    return token


_TINY_CORPUS = [
    "What is in the image? A photo of a cat sitting next to a dog on the grass.",
    "How many people are there? Two. Is the car red? Yes. What color is the sky? Blue.",
    "Answer the question using a single word or phrase.",
    "Provide a one-sentence caption for the provided image.",
    "Point to the cat. Point to the dog. Point to the person.",
    '<points coords="1 1 460 588 2 504 740">dog</points>',
    "USER: ASSISTANT: user assistant 0123456789",
]


def _tiny_tokenizer(special: list[str], extra: list[str], **kwargs: Any) -> Any:
    """A byte-level BPE tokenizer trained on a few lines (any text is representable);
    ``special`` come first in the vocabulary, ``extra`` special tokens after the BPE vocab."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_TINY_CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=2048, **kwargs)
    if extra:
        fast.add_special_tokens({"additional_special_tokens": extra})
    return fast


LENGTH_BUCKET = 16
MAX_ROWS = 16  # rows per generate batch (options["max_batch"])


@dataclass(frozen=True, eq=False)
class _Row:
    """One generation prepared on the caller's thread: the picture, its token budget, its
    prompt's token ids without padding, the other per-token inputs the processor made for
    it (e.g. Molmo2's ``mm_token_type_ids``), its share of the processor's picture inputs
    (``_HFVisionLM._pictures``: LLaVA's ``pixel_values`` row, Molmo2's crops), so the
    vision encoder never preprocesses the picture again, and the form of number it must
    write, if it must (:mod:`tools.backends.numbers`)."""

    image: Image
    budget: int
    ids: torch.Tensor  # [L] long
    tokens: dict[str, torch.Tensor]  # name -> [L]
    picture: Any  # None: the processor's outputs are not laid out as the family's layout knows
    number: NumberForm | None = None


@functools.cache
def _row_budgets_class() -> type:
    from transformers import StoppingCriteria

    class RowBudgets(StoppingCriteria):
        """Ends each row at its own number of new tokens (a row that stops early is padded
        while the others go on; the batch ends when every row has stopped)."""

        def __init__(self, prompt_length: int, budgets: Sequence[int], device: str) -> None:
            self.prompt_length = prompt_length
            self.budgets = torch.tensor(list(budgets), device=device)

        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            return (input_ids.shape[1] - self.prompt_length) >= self.budgets

    return RowBudgets


# --- the backends ----------------------------------------------------------------------------


class _HFVisionLM(HFBackend):
    """A transformers image-text-to-text model with its processor."""

    model_class: ClassVar[str] = ""
    default_model: ClassVar[str] = ""
    supports_pointing: ClassVar[bool] = False
    # how the image processor's outputs hold each picture's part (tools.backends.image_processing)
    picture_layout: ClassVar[PictureLayout] = PER_PICTURE
    # answer(..., numbers=...) makes the rows asked for a count write digits only
    answers_numbers: ClassVar[bool] = True
    batch_methods: ClassVar[Mapping[str, int]] = {
        "answer": 1,
        "caption": 1,
        "generate": 2,
        "point": 1,
    }

    def __init__(self, spec: ModelSpec, placement: Placement, model: Any, processor: Any) -> None:
        # six questions about two photos preprocess two pictures, not six
        processor = with_distinct_pictures(processor, self.picture_layout)
        super().__init__(spec, placement, model, processor)
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.answer_suffix = str(spec.options.get("answer_suffix", ANSWER_SUFFIX))
        self.caption_prompt = str(spec.options.get("caption_prompt", CAPTION_PROMPT))
        # Prompts are left-padded to a multiple of this many tokens, so a GPU sees a few
        # repeating shapes (attention plans and kernels are chosen per shape) instead of
        # one per prompt length; the attention mask hides the padding.
        self.length_bucket = int(spec.options.get("length_bucket", LENGTH_BUCKET))
        self.max_rows = int(spec.options.get("max_batch", MAX_ROWS))
        self.max_context = self._context_limit()  # tokens a row may hold (None: unknown)
        self._number_vocab: NumberVocab | None = None

    # --- prompts -----------------------------------------------------------------------------

    def question_prompt(self, question: str) -> str:
        """The user's text for a short-answer question (LLaVA-1.5's VQA style)."""
        question = question.strip()
        return f"{question}\n{self.answer_suffix}" if self.answer_suffix else question

    def chat_prompt(self, text: str) -> str:
        """The full prompt for one image and ``text``: the processor's chat template when it
        has one, else the family's plain format. It holds the image placeholder token."""
        if getattr(self.processor, "chat_template", None):
            messages = [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}
            ]
            return self.processor.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
        return self._plain_prompt(text)

    def _plain_prompt(self, text: str) -> str:
        raise NotImplementedError

    # --- generation --------------------------------------------------------------------------

    def answer(
        self,
        requests: Sequence[tuple[Image, str]],
        *,
        max_new_tokens: int | Sequence[int] = 32,
        numbers: Sequence[NumberForm | str | bool | None] | None = None,
    ) -> list[str]:
        """Short answers to (image, question) pairs, one batched greedy generation
        (``max_new_tokens``: one budget for all, or one per pair; ``numbers``: per pair,
        whether its answer must be a number — a :class:`~tools.backends.numbers.NumberForm`,
        True for any — its decoding then constrained to digits)."""
        return self.generate(
            [image for image, _ in requests],
            [self.question_prompt(question) for _, question in requests],
            max_new_tokens=max_new_tokens,
            numbers=numbers,
        )

    def caption(self, images: Sequence[Image], *, max_new_tokens: int = 48) -> list[str]:
        """A one-sentence caption per image, one batched greedy generation."""
        return self.generate(
            list(images), [self.caption_prompt] * len(images), max_new_tokens=max_new_tokens
        )

    def generate(
        self,
        images: Sequence[Image],
        texts: Sequence[str],
        *,
        max_new_tokens: int | Sequence[int],
        numbers: Sequence[NumberForm | str | bool | None] | None = None,
    ) -> list[str]:
        """Greedy completions of the chat prompts for (image, text) pairs: only the new
        tokens, decoded without special tokens and stripped. ``max_new_tokens`` is one
        budget or one per pair; a row stops at its end token or its own budget. A pair
        whose ``numbers`` entry is a form (or True) writes a number of that form.

        The prompts are built here, on the caller's thread; the generation runs in the
        model's ``generate`` lane, in one batch with the other callers' rows (Vqa,
        captions, pointing — whichever tools and programs asked meanwhile)."""
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} prompts")
        budgets = token_budgets(max_new_tokens, len(images))
        wants = [None] * len(images) if numbers is None else [number_form(n) for n in numbers]
        if len(wants) != len(images):
            raise ValueError(f"{len(wants)} number flags for {len(images)} prompts")
        if not images:
            return []
        prompts = [self.chat_prompt(t) for t in texts]
        rows = functools.partial(self._prepare, list(images), prompts, budgets, wants)
        lanes = self.lanes
        return list(lanes.after("generate", self._generate_rows, rows, max_batch=self.max_rows))

    def _prepare(
        self,
        images: list[Image],
        prompts: list[str],
        budgets: list[int],
        numbers: list[NumberForm | None],
    ) -> list[_Row]:
        """Tokenise the prompts and preprocess the pictures (the processor's CPU work), one
        row per pair, unpadded: the batch pads them again with whatever rows it holds."""
        by_hash: dict[str, Any] = {}  # equal pixels: one PIL object, preprocessed once
        pils = [by_hash.setdefault(image.hash, image.pil) for image in images]
        try:
            inputs = self.processor(images=pils, text=prompts, padding=True, return_tensors="pt")
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ModelError(f"{self.spec.label()} failed: {type(exc).__name__}: {exc}") from exc
        mask = inputs["attention_mask"].bool()
        limit = self.max_context
        for held, budget in zip(mask.sum(dim=1).tolist(), budgets, strict=True):
            if limit is not None and held + budget > limit:  # refused here, on its own call
                raise ToolInputError(
                    f"{self.spec.label()} holds {limit:,} tokens; this prompt takes {held:,} "
                    f"and its answer up to {budget}: shorten the question"
                )
        pixel_keys = set(self._pixel_keys())
        per_token = [
            key for key, value in inputs.items()
            if key not in pixel_keys | {"input_ids", "attention_mask"}
            and isinstance(value, torch.Tensor) and value.shape[:2] == mask.shape
        ]  # fmt: skip
        pictures = self._pictures(inputs, len(images))
        return [
            _Row(
                image,
                budget,
                inputs["input_ids"][i][mask[i]],
                {key: inputs[key][i][mask[i]] for key in per_token},
                None if pictures is None else pictures[i],
                number,
            )
            for i, (image, budget, number) in enumerate(zip(images, budgets, numbers, strict=True))
        ]

    def _context_limit(self) -> int | None:
        """The most tokens a row may hold, prompt and answer together: the spec's option
        ``max_context``, else the text model's ``max_position_embeddings`` (None: no
        bound known)."""
        given = self.spec.options.get("max_context")
        if given is not None:
            return int(given)
        config = self.model.config
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        limit = getattr(text, "max_position_embeddings", None)
        return limit if isinstance(limit, int) and limit > 0 else None

    def _batch_inputs(self, rows: list[_Row], pad: int) -> dict[str, torch.Tensor]:
        """The rows left-padded together to a multiple of ``length_bucket`` tokens (so a
        GPU sees a few repeating shapes; the attention mask hides the padding)."""
        longest = max(len(row.ids) for row in rows)
        length = -(-longest // self.length_bucket) * self.length_bucket
        ids = torch.full((len(rows), length), pad, dtype=rows[0].ids.dtype)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        tokens = {
            k: torch.zeros((len(rows), length), dtype=v.dtype) for k, v in rows[0].tokens.items()
        }
        for i, row in enumerate(rows):
            n = len(row.ids)
            ids[i, length - n :] = row.ids
            mask[i, length - n :] = 1
            for key, value in row.tokens.items():
                tokens[key][i, length - n :] = value
        return {"input_ids": ids, "attention_mask": mask, **tokens}

    @on_model_thread
    def _generate_rows(self, rows: list[_Row]) -> list[str]:
        """One left-padded greedy ``generate`` over prepared rows; each row stops at an end
        token or at its own budget, the batch when every row has."""
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        eos = self.model.generation_config.eos_token_id
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else _first(eos)
        budgets = [row.budget for row in rows]
        try:
            with torch.inference_mode():
                pictures = [row.picture for row in rows]
                given = None if any(p is None for p in pictures) else pictures
                features = self._image_features([row.image for row in rows], given)
                inputs = {k: v.to(self.device) for k, v in self._batch_inputs(rows, pad).items()}
                config = GenerationConfig(
                    max_new_tokens=max(budgets),
                    do_sample=False,
                    eos_token_id=eos,
                    pad_token_id=pad,
                    bos_token_id=self.model.generation_config.bos_token_id,
                )
                prompt_length = inputs["input_ids"].shape[1]
                stops = StoppingCriteriaList()
                if min(budgets) < max(budgets):
                    stops.append(_row_budgets_class()(prompt_length, budgets, self.device))
                processors = LogitsProcessorList()
                counted = {i: row.number for i, row in enumerate(rows) if row.number}
                if counted:
                    processors.append(numbers_only(self.number_vocab(), counted, prompt_length))
                output = self.model.generate(
                    **inputs,
                    mm_encoder_outputs={"image": features},
                    generation_config=config,
                    stopping_criteria=stops,
                    logits_processor=processors,
                )
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ModelError(f"{self.spec.label()} failed: {type(exc).__name__}: {exc}") from exc
        new = output[:, prompt_length:].cpu()
        lengths = self._lengths(new, eos, pad, budgets)
        self.stats["generated_tokens"] += sum(lengths)
        new = [row[: min(n, b)] for row, n, b in zip(new, lengths, budgets, strict=True)]
        self.stats["generate_calls"] += 1
        texts_out = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [t.strip() for t in texts_out]

    def number_vocab(self) -> NumberVocab:
        """The tokens a number is written with (found once, on first use)."""
        if self._number_vocab is None:
            eos = self.model.generation_config.eos_token_id
            ends = [eos] if isinstance(eos, int) else list(eos or [])
            self._number_vocab = NumberVocab.of(self.tokenizer, ends)
        return self._number_vocab

    @staticmethod
    def _lengths(
        new: torch.Tensor, eos: int | list[int] | None, pad: int | None, budgets: Sequence[int]
    ) -> list[int]:
        """Tokens each row really generated: up to and including its first end token, and
        not the padding that follows a row stopped at its budget."""
        stops = [eos] if isinstance(eos, int) else list(eos or [])
        lengths = []
        for row, budget in zip(new.tolist(), budgets, strict=True):
            end = next((k + 1 for k, t in enumerate(row) if t in stops), len(row))
            if end > budget and all(t == pad for t in row[budget:]):
                end = budget  # stopped at its budget, padded while the others went on
            lengths.append(end)
        return lengths

    def _pixel_keys(self) -> list[str]:
        return list(getattr(self.processor.image_processor, "model_input_names", ["pixel_values"]))

    def _image_features(self, images: list[Image], pictures: list[Any] | None) -> Any:
        """The projected image tokens of every image (a BaseModelOutputWithPooling whose
        ``pooler_output`` holds one tensor per image), encoding only images not cached."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        def encode(first: list[int]) -> list[torch.Tensor]:
            self.stats["image_encoder"] += len(first)
            return [feats.clone() for feats in self._encode(images, first, pictures)]

        keys = [(f"{self.family}_image", image.hash) for image in images]
        return BaseModelOutputWithPooling(pooler_output=tuple(self.cached_many(keys, encode)))

    def _pictures(self, inputs: Mapping[str, Any], n: int) -> list[Any] | None:
        """Each of ``n`` rows' share of the processor's picture inputs (its image
        processor's ``model_input_names``, split by :attr:`picture_layout`), which
        :meth:`_encode` takes instead of preprocessing the picture again; None when they
        are not laid out as the layout knows."""
        pictures = {key: inputs[key] for key in self._pixel_keys() if key in inputs}
        return self.picture_layout.split(pictures, n) if pictures else None

    def _encode(
        self, images: list[Image], which: list[int], pictures: list[Any] | None
    ) -> list[torch.Tensor]:
        """Image-token features for ``images[i]``, i in ``which``, in one vision forward,
        from their rows' shares (:meth:`_pictures`) when known, else preprocessed here."""
        if pictures is None:
            given = self.processor.image_processor(
                images=[images[i].pil for i in which], return_tensors="pt"
            )
        else:
            given = self.picture_layout.join([pictures[i] for i in which])
        return list(self._vision(given))

    def _vision(self, given: Mapping[str, Any]) -> Any:
        """The projected image tokens, one tensor per picture, of the image processor's
        outputs ``given``."""
        raise NotImplementedError


class LlavaBackend(_HFVisionLM):
    """LLaVA (1.5 and other ``LlavaForConditionalGeneration`` checkpoints)."""

    family = "llava"
    model_class = "LlavaForConditionalGeneration"
    default_model = "llava-hf/llava-1.5-7b-hf"
    supports_pointing = False

    def _plain_prompt(self, text: str) -> str:
        token = getattr(self.processor, "image_token", "<image>")
        return f"USER: {token}\n{text} ASSISTANT:"

    def _vision(self, given: Mapping[str, Any]) -> Any:
        config = self.model.config
        return self.model.get_image_features(
            pixel_values=given["pixel_values"].to(self.device, self.dtype),
            vision_feature_layer=config.vision_feature_layer,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
        ).pooler_output

    @classmethod
    def tiny_spec(cls, directory: Path) -> ModelSpec:
        """A tiny random LLaVA: CLIP vision tower (32 px, 8 px patches: 16 image tokens)
        and a 2-layer Llama. head_dim 32 everywhere, so vLLM's CPU attention serves it."""
        from transformers import (
            CLIPImageProcessor,
            CLIPVisionConfig,
            LlamaConfig,
            LlavaConfig,
            LlavaForConditionalGeneration,
            LlavaProcessor,
        )

        directory = Path(directory)
        tokenizer = _tiny_tokenizer(
            ["<unk>", "<s>", "</s>", "<pad>", "<image>"],
            [],
            bos_token="<s>",
            eos_token="</s>",
            pad_token="<pad>",
            unk_token="<unk>",
            extra_special_tokens={"image_token": "<image>"},
        )
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<s>", "</s>", "<pad>", "<image>")}
        vision = CLIPVisionConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
            image_size=32, patch_size=8, projection_dim=64,
        )  # fmt: skip
        text = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
            max_position_embeddings=1024, bos_token_id=ids["<s>"], eos_token_id=ids["</s>"],
            pad_token_id=ids["<pad>"], tie_word_embeddings=False,
        )  # fmt: skip
        config = LlavaConfig(
            vision_config=vision,
            text_config=text,
            image_token_index=ids["<image>"],
            vision_feature_layer=-2,
            vision_feature_select_strategy="default",
            projector_hidden_act="gelu",
        )
        with seeded():
            model = LlavaForConditionalGeneration(config)
        redraw(model)
        model.generation_config.bos_token_id = ids["<s>"]
        model.generation_config.eos_token_id = ids["</s>"]
        model.generation_config.pad_token_id = ids["<pad>"]
        model.save_pretrained(directory)
        # BOS comes from the template (as vLLM's chat path expects), not from the tokenizer
        template = (
            "{{ bos_token }}{% for message in messages %}"
            "{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
            "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
            "{% for part in message['content'] %}"
            "{% if part['type'] == 'image' or part['type'] == 'image_url' %}<image>\n"
            "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
            "{% endfor %}{% endif %}"
            "{% if message['role'] == 'user' %} {% else %}</s>{% endif %}"
            "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
        )
        size = {"height": 32, "width": 32}
        processor = LlavaProcessor(
            image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=size),
            tokenizer=tokenizer,
            patch_size=8,
            vision_feature_select_strategy="default",
            chat_template=template,
            image_token="<image>",
            num_additional_image_tokens=1,
        )
        processor.save_pretrained(directory)
        return ModelSpec(family=cls.family, model=str(directory))


MOLMO2_IMAGE_TOKENS = [
    "<im_start>", "<im_end>", "<im_patch>", "<im_col>", "<low_res_im_start>",
    "<frame_start>", "<frame_end>", "<im_low>", "<|image|>", "<|video|>",
]  # fmt: skip


class Molmo2Backend(_HFVisionLM):
    """Molmo2: answers, captions and points (``<points coords="...">label</points>``)."""

    family = "molmo2"
    model_class = "Molmo2ForConditionalGeneration"
    default_model = "allenai/Molmo2-4B"
    supports_pointing = True
    picture_layout = MOLMO2_CROPS

    def _plain_prompt(self, text: str) -> str:
        token = getattr(self.processor, "image_token", "<|image|>")
        return f"{token}User: {text} Assistant:"

    def point(
        self, requests: Sequence[tuple[Image, str]], *, max_new_tokens: int = 96
    ) -> list[PointList]:
        """Where each (image, object) pair's object is: the model is asked to point at it
        and its answer is parsed into pixel points labelled with the object."""
        template = str(self.spec.options.get("point_prompt", POINT_PROMPT))
        texts = self.generate(
            [image for image, _ in requests],
            [template.format(object=obj.strip()) for _, obj in requests],
            max_new_tokens=max_new_tokens,
        )
        return [
            parse_points(text, image.width, image.height, label=obj.strip())
            for text, (image, obj) in zip(texts, requests, strict=True)
        ]

    def _vision(self, given: Mapping[str, Any]) -> Any:
        return self.model.get_image_features(
            pixel_values=given["pixel_values"].to(self.device, self.dtype),
            image_token_pooling=given["image_token_pooling"].to(self.device),
            image_grids=given["image_grids"].to(self.device),
        ).pooler_output

    @classmethod
    def tiny_spec(cls, directory: Path) -> ModelSpec:
        """A tiny random Molmo2: 32 px crops of 8 px patches (at most 2 crops plus the
        low-resolution view), a 2-layer text model and a chat template in Molmo2's
        ``<|im_start|>`` style."""
        from transformers import (
            Molmo2Config,
            Molmo2ForConditionalGeneration,
            Molmo2ImageProcessor,
            Molmo2Processor,
            Molmo2VideoProcessor,
        )

        directory = Path(directory)
        tokenizer = _tiny_tokenizer(
            ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            MOLMO2_IMAGE_TOKENS,
            eos_token="<|endoftext|>",
            pad_token="<|endoftext|>",
            extra_special_tokens={"image_token": "<|image|>", "video_token": "<|video|>"},
        )
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in MOLMO2_IMAGE_TOKENS}
        base_vocab = min(ids.values())
        config = Molmo2Config(
            vision_config={
                "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 16,
                "image_size": [32, 32], "patch_size": 8,
            },
            adapter_config={
                "vision_feature_layer": [-1, 0], "hidden_size": 32, "num_attention_heads": 2,
                "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 64,
                "text_hidden_size": 64,
            },
            text_config={
                "hidden_size": 64, "num_attention_heads": 2, "num_key_value_heads": 1,
                "head_dim": 32, "vocab_size": base_vocab,
                "additional_vocab_size": len(tokenizer) - base_vocab, "num_hidden_layers": 2,
                "intermediate_size": 128, "max_position_embeddings": 2048,
            },
            image_start_token_id=ids["<im_start>"],
            low_res_image_start_token_id=ids["<low_res_im_start>"],
            image_end_token_id=ids["<im_end>"],
            image_patch_id=ids["<im_patch>"],
            frame_start_token_id=ids["<frame_start>"],
            frame_end_token_id=ids["<frame_end>"],
        )  # fmt: skip
        with seeded():
            model = Molmo2ForConditionalGeneration(config)
        redraw(model)
        eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        model.generation_config.eos_token_id = eos
        model.generation_config.pad_token_id = eos
        model.save_pretrained(directory)
        template = (
            "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
            "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
            "{% for part in message['content'] %}"
            "{% if part['type'] == 'image' %}<|image|>"
            "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
            "{% endfor %}{% endif %}<|im_end|>\n"
            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
        )
        crop = {"height": 32, "width": 32}
        processor = Molmo2Processor(
            image_processor=Molmo2ImageProcessor(
                size=crop, patch_size=8, max_crops=2, overlap_margins=[1, 1], pooling_size=[2, 2]
            ),
            video_processor=Molmo2VideoProcessor(size=crop, patch_size=8, pooling_size=[2, 2]),
            tokenizer=tokenizer,
            chat_template=template,
        )
        processor.save_pretrained(directory)
        return ModelSpec(family=cls.family, model=str(directory))


__all__ = ["LlavaBackend", "Molmo2Backend", "parse_points"]

"""Open-vocabulary detection through transformers: Grounding DINO, OWL-ViT and OWLv2.

All three answer the same question — "where are these phrases in this image?" — so one base
class owns the shared work (loading, thresholds, class-wise NMS, pixel boxes, ordering) and
each family only turns a batch of images and per-image phrase lists into raw boxes with one
score per phrase.

* OWL-ViT / OWLv2 score image patches against text embeddings late, so the image side
  (patch features and the boxes predicted from them) is cached per image: asking a second
  question about the same picture only runs the text encoder.
* Grounding DINO fuses text and image inside its encoder, so nothing per image can be
  reused; each call runs the whole model once for the whole batch. Its phrases share one
  prompt per image ("a cat. a dog."), and every token is mapped back to the phrase it came
  from through the tokenizer's character offsets.

Batching: OWL processors resize every image to one square, so a whole batch is one forward
and gives exactly what single calls give. Grounding DINO keeps each image's aspect ratio;
padding a mixed batch to its largest image changes the results of the padded images (the
backbone sees the padding, and the two-stage query selection follows it), so by default
its batch runs one forward per processed image size — one forward for the usual batch of
calls on the same picture. ``options={"batching": "pad"}`` forces a single padded forward.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import torch

from ..errors import ModelError
from ..settings import ModelSpec
from ..types import Box, Image, Object, ObjectList
from .base import Placement
from .hf import HFBackend, redraw, seeded
from .threads import on_model_thread

log = logging.getLogger("vischain.models")

DEFAULT_NMS_IOU = 0.5
DEFAULT_MAX_DETECTIONS = 100


# --- shared pieces ---------------------------------------------------------------------------


def class_nms(
    boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou: float
) -> torch.Tensor:
    """Indices of the boxes kept by non-maximum suppression within each class, best first.

    ``boxes`` is N×4 (x0, y0, x1, y1), ``scores`` N, ``classes`` N integer labels; boxes of
    different classes never suppress each other.
    """
    from torchvision.ops import batched_nms

    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    return batched_nms(boxes.float(), scores.float(), classes, iou)


def clean_query(text: str) -> str:
    """A phrase as the detectors see it: one line, no sentence dots, single spaces."""
    return " ".join(text.replace(".", " ").split())


class _HFDetector(HFBackend):
    """An open-vocabulary detector from transformers (model + processor)."""

    model_class: ClassVar[str] = ""  # name in the transformers namespace
    default_model: ClassVar[str] = ""
    default_threshold: ClassVar[float] = 0.3

    def __init__(self, spec: ModelSpec, placement: Placement, model: Any, processor: Any) -> None:
        super().__init__(spec, placement, model, processor)
        options = spec.options
        self.threshold = float(options.get("threshold", self.default_threshold))
        self.nms_iou = float(options.get("nms_iou", DEFAULT_NMS_IOU))
        self.max_detections = int(options.get("max_detections", DEFAULT_MAX_DETECTIONS))

    # --- detection ---------------------------------------------------------------------------

    batch_methods: ClassVar[Mapping[str, int]] = {"detect": 2}

    @on_model_thread
    def detect(
        self,
        images: Sequence[Image],
        queries: Sequence[Sequence[str]],
        *,
        threshold: float | None = None,
    ) -> list[ObjectList]:
        """For each image, the boxes whose best phrase among that image's ``queries`` scores
        above ``threshold``, labelled with that phrase, after class-wise NMS, best first."""
        if len(images) != len(queries):
            raise ValueError(f"{len(images)} images but {len(queries)} query lists")
        threshold = self.threshold if threshold is None else float(threshold)
        results: list[ObjectList] = [ObjectList() for _ in images]
        todo = [i for i, q in enumerate(queries) if any(clean_query(t) for t in q)]
        if not todo:
            return results
        phrases = [[t for t in queries[i] if clean_query(t)] for i in todo]
        try:
            with torch.inference_mode():
                raw = self._predict([images[i] for i in todo], phrases, threshold)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ModelError(f"{self.spec.label()} failed: {type(exc).__name__}: {exc}") from exc
        for i, labels, (boxes, scores, classes) in zip(todo, phrases, raw, strict=True):
            results[i] = self._finish(images[i], labels, boxes, scores, classes)
        return results

    def _finish(
        self,
        image: Image,
        labels: list[str],
        boxes: torch.Tensor,
        scores: torch.Tensor,
        classes: torch.Tensor,
    ) -> ObjectList:
        """Clip to the image, drop empty boxes, NMS per phrase, best first."""
        limit = torch.tensor([image.width, image.height, image.width, image.height])
        boxes = torch.minimum(boxes.float().cpu().clamp(min=0), limit)
        scores = scores.float().cpu()
        classes = classes.long().cpu()
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        order = class_nms(boxes, scores, classes, self.nms_iou)[: self.max_detections]
        return ObjectList(
            tuple(
                Object(
                    Box.of(boxes[k].tolist()), label=labels[int(classes[k])], score=float(scores[k])
                )
                for k in order.tolist()
            )
        )

    def _predict(
        self, images: list[Image], queries: list[list[str]], threshold: float
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per image: boxes (N×4, pixels of that image), scores (N) and phrase indices (N)
        of the boxes whose best phrase scores above ``threshold``."""
        raise NotImplementedError


# --- OWL-ViT and OWLv2 -----------------------------------------------------------------------


class _OwlBackend(_HFDetector):
    """OWL-ViT / OWLv2: patch features and boxes per image (cached), text embeddings per
    phrase, one class head over the padded phrase lists."""

    default_threshold = 0.1
    tiny_image_size: ClassVar[int] = 32  # tiny models see a 4×4 grid of patches

    def _base(self) -> Any:
        return self.model.owlv2 if hasattr(self.model, "owlv2") else self.model.owlvit

    def _image_side(self, images: list[Image]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(patch features P×D, boxes P×4 normalized cxcywh) per image, from the cache when
        the same picture was seen before; the rest in one vision forward."""

        def encode(first: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
            pixels = self.processor.image_processor(
                images=[images[i].pil for i in first], return_tensors="pt"
            )["pixel_values"].to(self.device, self.dtype)
            feature_map, _ = self.model.image_embedder(pixel_values=pixels)
            self.stats["image_encoder"] += len(first)
            b, h, w, d = feature_map.shape
            feats = feature_map.reshape(b, h * w, d)
            boxes = self.model.box_predictor(feats, feature_map)
            return [(feats[j].clone(), boxes[j].clone()) for j in range(len(first))]

        return self.cached_many([("owl_image", image.hash) for image in images], encode)

    def _text_side(self, phrases: list[str]) -> torch.Tensor:
        """Text embeddings (len(phrases)×D), one text-encoder forward."""
        tokens = self.processor.tokenizer(
            phrases, padding="max_length", truncation=True, return_tensors="pt"
        ).to(self.device)
        return self._base().get_text_features(**tokens).pooler_output

    def _predict(
        self, images: list[Image], queries: list[list[str]], threshold: float
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        image_side = self._image_side(images)
        unique = list(dict.fromkeys(clean_query(q) for qs in queries for q in qs))
        text = self._text_side(unique)
        where = {q: k for k, q in enumerate(unique)}
        width = max(len(qs) for qs in queries)
        query_embeds = text.new_zeros((len(images), width, text.shape[-1]))
        query_mask = torch.zeros((len(images), width), dtype=torch.bool, device=text.device)
        for i, qs in enumerate(queries):
            for j, q in enumerate(qs):
                query_embeds[i, j] = text[where[clean_query(q)]]
                query_mask[i, j] = True
        feats = torch.stack([f for f, _ in image_side])
        boxes = torch.stack([b for _, b in image_side])
        logits, _ = self.model.class_predictor(feats, query_embeds, query_mask)
        # padded phrase slots already hold the dtype's minimum: sigmoid gives them 0
        outputs = SimpleNamespace(logits=logits.float(), pred_boxes=boxes.float())
        found = self.processor.post_process_grounded_object_detection(
            outputs=outputs,
            threshold=threshold,
            target_sizes=[(image.height, image.width) for image in images],
        )
        return [(r["boxes"], r["scores"], r["labels"]) for r in found]

    @classmethod
    def _tiny_configs(cls) -> tuple[dict[str, Any], dict[str, Any]]:
        text = {
            "vocab_size": 0,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
        }
        vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                  "num_attention_heads": 2, "image_size": cls.tiny_image_size,
                  "patch_size": cls.tiny_image_size // 4}  # fmt: skip
        return text, vision

    @classmethod
    def _tiny_processor(cls, tokenizer: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def tiny_spec(cls, directory: Path) -> ModelSpec:
        import transformers

        directory = Path(directory)
        tokenizer = _tiny_clip_tokenizer()
        text, vision = cls._tiny_configs()
        text.update(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        prefix = cls.model_class.removesuffix("ForObjectDetection")
        config = getattr(transformers, f"{prefix}Config")(
            text_config=text, vision_config=vision, projection_dim=32
        )
        with seeded():
            model = getattr(transformers, cls.model_class)(config)
        redraw(model)
        model.save_pretrained(directory)
        cls._tiny_processor(tokenizer).save_pretrained(directory)
        return ModelSpec(family=cls.family, model=str(directory))


class OwlVitBackend(_OwlBackend):
    family = "owlvit"
    model_class = "OwlViTForObjectDetection"
    default_model = "google/owlvit-base-patch32"
    default_threshold = 0.1

    @classmethod
    def _tiny_processor(cls, tokenizer: Any) -> Any:
        from transformers import OwlViTImageProcessor, OwlViTProcessor

        size = {"height": 32, "width": 32}
        return OwlViTProcessor(OwlViTImageProcessor(size=size, crop_size=size), tokenizer)


class Owlv2Backend(_OwlBackend):
    family = "owlv2"
    model_class = "Owlv2ForObjectDetection"
    default_model = "google/owlv2-base-patch16-ensemble"
    default_threshold = 0.2
    # OWLv2's processor blurs before downscaling with a kernel that grows with the factor:
    # a photo to 32 px takes seconds, to 128 px a tenth of one
    tiny_image_size = 128

    @classmethod
    def _tiny_processor(cls, tokenizer: Any) -> Any:
        from transformers import Owlv2ImageProcessor, Owlv2Processor

        size = {"height": cls.tiny_image_size, "width": cls.tiny_image_size}
        return Owlv2Processor(Owlv2ImageProcessor(size=size), tokenizer)


def _tiny_clip_tokenizer() -> Any:
    """A CLIP byte-level BPE tokenizer over single bytes plus a few whole words, shaped like
    OWL-ViT's: ids of BOS/EOS are the largest (the text model pools at argmax(input_ids)),
    the pad token "!" is id 0 and 16 tokens at most."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    alphabet = sorted(ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab.update({ch + "</w>": len(alphabet) + i for i, ch in enumerate(alphabet)})
    merges: list[tuple[str, str]] = []
    for word in ("cat", "dog", "car", "person", "photo", "tree"):
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            merges.append((parts[0], parts[1]))
            merged = parts[0] + parts[1]
            vocab.setdefault(merged, len(vocab))
            parts = [merged, *parts[2:]]
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, pad_token="!", model_max_length=16)


# --- Grounding DINO --------------------------------------------------------------------------


class GroundingDinoBackend(_HFDetector):
    """Grounding DINO: one prompt "a. b. c." per image; a box's score for a phrase is the
    highest token probability among that phrase's tokens."""

    family = "grounding_dino"
    model_class = "GroundingDinoForObjectDetection"
    default_model = "IDEA-Research/grounding-dino-tiny"
    default_threshold = 0.3

    @staticmethod
    def prompt(queries: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
        """The text prompt for ``queries`` and each phrase's character span in it."""
        text, spans = "", []
        for q in queries:
            phrase = clean_query(q).lower()
            if text:
                text += " "
            spans.append((len(text), len(text) + len(phrase)))
            text += phrase + "."
        return text, spans

    def _predict(
        self, images: list[Image], queries: list[list[str]], threshold: float
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        prompts, spans = zip(*(self.prompt(qs) for qs in queries), strict=True)
        tokens = self.processor.tokenizer(
            list(prompts),
            padding="longest",
            truncation=True,
            max_length=int(self.model.config.max_text_len),
            return_offsets_mapping=True,
            return_token_type_ids=True,
            return_tensors="pt",
        )
        offsets = tokens.pop("offset_mapping")
        pil = [image.pil for image in images]
        if self.spec.options.get("batching", "shape") == "pad":
            groups = [(list(range(len(images))), self.processor.image_processor(pil))]
        else:
            # one forward per processed size, so padding never changes an image's result
            single = [self.processor.image_processor(im, return_tensors="pt") for im in pil]
            by_shape: dict[tuple[int, ...], list[int]] = {}
            for i, feats in enumerate(single):
                by_shape.setdefault(tuple(feats["pixel_values"].shape), []).append(i)
            groups = [
                (idx, {k: torch.cat([single[i][k] for i in idx]) for k in single[idx[0]]})
                for idx in by_shape.values()
            ]
        found: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        for idx, pixels in groups:
            outputs = self._forward(tokens, idx, pixels)
            for row, i in enumerate(idx):
                found[i] = self._score(outputs, row, images[i], offsets[i], spans[i], threshold)
        return [found[i] for i in range(len(images))]

    def _forward(self, tokens: Any, idx: list[int], pixels: Any) -> Any:
        """The model on images ``idx`` (pixel batch ``pixels``) with their prompts."""
        select = torch.tensor(idx)
        inputs = {k: v[select].to(self.device) for k, v in tokens.items()}
        inputs["pixel_values"] = torch.as_tensor(pixels["pixel_values"]).to(self.device, self.dtype)
        inputs["pixel_mask"] = torch.as_tensor(pixels["pixel_mask"]).to(self.device)
        self.stats["image_encoder"] += len(idx)
        return self.model(**inputs)

    @staticmethod
    def _score(
        outputs: Any,
        row: int,
        image: Image,
        offsets: torch.Tensor,
        spans: Sequence[tuple[int, int]],
        threshold: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Boxes of one image in pixels, each with its best phrase and that phrase's score
        (the highest probability among the phrase's tokens)."""
        from transformers.image_transforms import center_to_corners_format

        logits = outputs.logits[row, :, : offsets.shape[0]].float()  # boxes × tokens
        member = _token_membership(offsets, spans).to(logits.device)  # phrases × tokens
        per_phrase = (logits.sigmoid()[:, None, :] * member[None]).amax(-1)  # boxes × phrases
        scores, classes = per_phrase.max(-1)
        keep = scores > threshold
        corners = center_to_corners_format(outputs.pred_boxes[row].float())
        scale = corners.new_tensor([image.width, image.height, image.width, image.height])
        return corners[keep] * scale, scores[keep], classes[keep]

    @classmethod
    def tiny_spec(cls, directory: Path) -> ModelSpec:
        from transformers import (
            BertConfig,
            BertTokenizerFast,
            GroundingDinoConfig,
            GroundingDinoForObjectDetection,
            GroundingDinoImageProcessor,
            GroundingDinoProcessor,
            SwinConfig,
        )

        directory = Path(directory)
        words = ["a", "the", "cat", "dog", "car", "person", "tree", "red", "blue", "photo"]
        letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789")
        vocab = list(dict.fromkeys(
            ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?", ",", *words, *letters,
             *(f"##{ch}" for ch in letters)]
        ))  # fmt: skip
        tokenizer = BertTokenizerFast(
            vocab={w: i for i, w in enumerate(vocab)}, model_max_length=64
        )
        backbone = SwinConfig(
            embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4,
            image_size=64, out_features=["stage2", "stage3", "stage4"],
        )  # fmt: skip
        text = BertConfig(
            vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=64,
        )  # fmt: skip
        config = GroundingDinoConfig(
            backbone_config=backbone, text_config=text, d_model=32, encoder_layers=1,
            decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2,
            decoder_attention_heads=2, num_queries=30, num_feature_levels=3, encoder_n_points=2,
            decoder_n_points=2,
            max_text_len=64,
        )  # fmt: skip
        with seeded():
            model = GroundingDinoForObjectDetection(config)
        redraw(model)
        model.save_pretrained(directory)
        image_processor = GroundingDinoImageProcessor(
            size={"shortest_edge": 64, "longest_edge": 96}
        )
        GroundingDinoProcessor(image_processor, tokenizer).save_pretrained(directory)
        return ModelSpec(family=cls.family, model=str(directory))


def _token_membership(offsets: torch.Tensor, spans: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Q×T float mask: 1 where token t lies inside phrase q's character span."""
    start, end = offsets[:, 0], offsets[:, 1]
    real = end > start  # special and padding tokens have empty spans
    rows = [(real & (start >= a) & (end <= b)).float() for a, b in spans]
    return torch.stack(rows)


__all__ = [
    "GroundingDinoBackend",
    "OwlVitBackend",
    "Owlv2Backend",
    "class_nms",
    "clean_query",
]

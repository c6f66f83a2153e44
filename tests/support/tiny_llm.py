"""A tiny random-weight Llama with a real tokenizer, built offline for tests.

The model is useless as a language model but is a real HF `LlamaForCausalLM` checkpoint: both
transformers (project venv, 5.23) and vLLM (its own venv, transformers < 5.20) load it, so
tests can run a real inference server without any hub access. Weights are drawn from a seeded
generator in a fixed order, and the byte-level BPE tokenizer is trained on a built-in corpus,
so the same bytes come out on every build.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.build_once import build_once

# Bump when the recipe changes, so stale cached directories are rebuilt.
BUILD_VERSION = "1"
COMPLETE_MARKER = ".tiny-llama-complete"
SEED = 1234

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
SPECIAL_TOKENS = [BOS, EOS, PAD]

# A deliberately plain template: role headers, then the text; the model answers after
# "<|assistant|>". Works with every jinja-based chat template engine.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

MODEL_CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,  # vLLM's CPU attention supports 32, 64, ... but not 16
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
}

TARGET_VOCAB_SIZE = 1024

_CORPUS_LINES = [
    "BOX0=Loc(image=IMAGE, object='boat')",
    "BOX1=Loc(image=IMAGE, object='dog')",
    "IMAGE0=Crop(image=IMAGE, box=BOX0)",
    "ANSWER0=Vqa(image=IMAGE0, question='What color is the boat?')",
    "OBJ0=Seg(image=IMAGE)",
    "OBJ1=Select(image=IMAGE, object=OBJ0, query='sky', category=None)",
    "IMAGE1=Replace(image=IMAGE, object=OBJ1, prompt='a cloudy sky')",
    "ANSWER1=Count(box=BOX1)",
    "ANSWER2=Eval(expr=\"'yes' if {ANSWER1} > 0 else 'no'\")",
    "FINAL_RESULT=Result(var=ANSWER2)",
    "FACES0=FaceDet(image=IMAGE)",
    "TEXT0=Ocr(image=IMAGE, box=BOX0)",
    "Question: Is there a red car left of the tree?",
    "Program:",
    "The quick brown fox jumps over the lazy dog.",
    "A photo of a cat sitting on a wooden table next to a cup of coffee.",
    "How many people are in the picture? There are three people.",
    "Replace the boat with a kayak and blur the faces.",
    "def main(image):\n    return image.crop((0, 0, 10, 10))",
    "x = [1, 2, 3]; y = {'a': 1, \"b\": 2}  # comment",
    "0123456789 +-*/=<>()[]{}.,:;!?'\"_ @#$%^&|\\~`",
]


def _corpus() -> list[str]:
    """Return the training text: the seed lines plus numbered variants of the program lines."""
    lines = list(_CORPUS_LINES)
    objects = ["boat", "dog", "cat", "person", "car", "tree", "sky", "face", "cup", "table"]
    for i in range(10):
        for obj in objects:
            lines.append(f"BOX{i}=Loc(image=IMAGE, object='{obj}')")
            lines.append(f"IMAGE{i}=Crop(image=IMAGE, box=BOX{i})")
    return lines


def _build_tokenizer(out_dir: Path) -> int:
    """Train a byte-level BPE tokenizer, save it in HF format and return its vocab size.

    Byte-level so that any text, and any string a grammar allows, is representable.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TARGET_VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=MODEL_CONFIG["max_position_embeddings"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    return tok.get_vocab_size()


def _build_model(out_dir: Path, vocab_size: int, bos_id: int, eos_id: int, pad_id: int) -> None:
    """Write a LlamaForCausalLM with seeded random float32 weights as safetensors."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        dtype="float32",
        **MODEL_CONFIG,
    )
    model = LlamaForCausalLM(config).to(torch.float32)

    # Re-draw every tensor in name order from one generator: independent of how a given
    # transformers version happens to initialise modules.
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)

    model.generation_config = GenerationConfig(
        bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id
    )
    model.save_pretrained(out_dir, safe_serialization=True)


def _build(out_dir: Path) -> None:
    vocab_size = _build_tokenizer(out_dir)
    vocab = json.loads((out_dir / "tokenizer.json").read_text())["model"]["vocab"]
    _build_model(out_dir, vocab_size, vocab[BOS], vocab[EOS], vocab[PAD])


def build_tiny_llama(directory: Path) -> Path:
    """Build (or reuse) a tiny random Llama checkpoint with tokenizer in `directory`
    (atomically: see :func:`tests.support.build_once.build_once`). Returns `directory`."""
    return build_once(directory, _build, marker=COMPLETE_MARKER, version=BUILD_VERSION)

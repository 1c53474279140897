"""A decoder LM with transformers' GPT-2 architecture as a chain of pipeline layers (embeddings, one layer per
``GPT2Block``, final norm + LM head), and WordNet gloss text to train it on.

Each layer is initialised from its own seed, so a pipeline rank builds only its own layers and still gets
the weights the whole model would have. The LM head is a separate matrix (GPT-2 ties it to the token
embedding): stages on different devices cannot share a parameter. With GPT-2's 12 x 768 blocks, a 25,000-
token vocabulary and the untied head the model has 124.3 M parameters, as many as GPT-2 small (tied,
50,257 tokens). A cached GPT-2 checkpoint, where one is given, is loaded layer by layer (its tied matrix
copied into the head).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

N_POSITIONS = 1024  # GPT-2's context; its position table counts towards the model's size
GPT2_SMALL = dict(n_blocks=12, d_model=768, n_heads=12, vocab=25_000)
EOS = "<|endoftext|>"


def gpt2_config(n_blocks: int, d_model: int, n_heads: int, vocab: int, seq_len: int):
    """A transformers ``GPT2Config`` without dropout (so a pipeline and one process compute the same) and with
    the SDPA attention kernel (causal without a mask)."""
    from transformers import GPT2Config
    from transformers.models.gpt2 import modeling_gpt2  # noqa: F401  every rank loads the same code (same runtime)

    config = GPT2Config(
        vocab_size=vocab,
        n_positions=max(N_POSITIONS, seq_len),
        n_embd=d_model,
        n_layer=n_blocks,
        n_head=n_heads,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=False,
        bos_token_id=0,  # EOS, the tokenizer's first token
        eos_token_id=0,
    )
    config._attn_implementation = "sdpa"
    return config


class TokenEmbedding(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)

    def forward(self, ids):
        return self.wte(ids) + self.wpe(torch.arange(ids.shape[1], device=ids.device))[None]


class Block(nn.Module):
    """One ``GPT2Block``; the module path ``block.attn.c_attn`` is what PEFT's LoRA targets."""

    def __init__(self, config, index: int):
        from transformers.models.gpt2.modeling_gpt2 import GPT2Block

        super().__init__()
        self.block = GPT2Block(config, layer_idx=index)

    def forward(self, x):
        out = self.block(x)
        return out[0] if isinstance(out, tuple) else out


class LMHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)

    def forward(self, x):
        return self.lm_head(self.ln_f(x))


def _init_like_gpt2(module: nn.Module, n_blocks: int) -> None:
    """GPT-2's initialisation: N(0, 0.02) weights, zero biases, residual projections scaled by 1/sqrt(2 L)."""
    for name, p in module.named_parameters():
        if p.dim() == 1:
            nn.init.ones_(p) if "ln" in name.split(".")[-2] else nn.init.zeros_(p)
        elif name.endswith("c_proj.weight"):
            nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_blocks))
        else:
            nn.init.normal_(p, 0.0, 0.02)


def gpt2_layers(
    n_blocks: int = 12,
    d_model: int = 768,
    n_heads: int = 12,
    vocab: int = 25_000,
    seq_len: int = 128,
    seed: int = 0,
    only: range | None = None,
) -> list[nn.Module | None]:
    """Embeddings, ``n_blocks`` GPT-2 blocks and the head, as a list (``None`` outside ``only``)."""
    from .models import layer_chain

    config = gpt2_config(n_blocks, d_model, n_heads, vocab, seq_len)

    def make(i: int) -> nn.Module:
        last = n_blocks + 1
        layer = TokenEmbedding(config) if i == 0 else LMHead(config) if i == last else Block(config, i - 1)
        _init_like_gpt2(layer, n_blocks)
        return layer

    return layer_chain(n_blocks + 2, make, seed, only)


def _checkpoint_key(i: int, n_layers: int, local: str) -> str:
    """The name in a ``GPT2LMHeadModel`` checkpoint of our layer ``i``'s parameter ``local``."""
    if i == 0:
        return f"transformer.{local}"
    if i == n_layers - 1:
        return local if local == "lm_head.weight" else f"transformer.{local}"
    return f"transformer.h.{i - 1}.{local.removeprefix('block.')}"


def load_checkpoint(layers: list[nn.Module | None], folder: str | Path) -> None:
    """Copy a GPT-2 checkpoint (``model.safetensors`` of a ``GPT2LMHeadModel``) into the built layers, reading
    only their tensors (a rank never holds the whole model)."""
    from safetensors import safe_open

    path = Path(folder) / "model.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"no model.safetensors in {folder}: give a saved GPT2LMHeadModel folder")
    with safe_open(str(path), framework="pt") as f:
        names = set(f.keys())
        for i, layer in enumerate(layers):
            if layer is None:
                continue
            for local, p in layer.state_dict().items():  # tensors sharing the parameters' storage
                key = _checkpoint_key(i, len(layers), local)
                if key == "lm_head.weight" and key not in names:
                    key = "transformer.wte.weight"  # GPT-2 ties its head to the token embedding
                if key not in names:
                    raise KeyError(f"checkpoint {path} has no tensor {key!r} for layer {i}")
                t = f.get_tensor(key)
                if t.shape != p.shape:
                    raise ValueError(f"{key}: checkpoint shape {tuple(t.shape)} != model {tuple(p.shape)}")
                p.copy_(t)


def find_cached_gpt2(name_or_path: str | None) -> Path | None:
    """A local folder with the checkpoint: ``name_or_path`` itself, or the Hugging Face cache's snapshot of
    that model (never downloaded). None when nothing is cached."""
    if not name_or_path:
        return None
    if Path(name_or_path).is_dir():
        return Path(name_or_path) if (Path(name_or_path) / "model.safetensors").exists() else None
    try:
        from huggingface_hub import snapshot_download

        patterns = ["*.json", "*.safetensors"]
        folder = Path(snapshot_download(name_or_path, local_files_only=True, allow_patterns=patterns))
    except Exception:
        return None
    return folder if (folder / "model.safetensors").exists() else None


def gloss_texts(data_dir: str | Path) -> list[str]:
    """One "lemma: gloss" line per WordNet noun synset, in file order."""
    import csv

    with open(Path(data_dir) / "wordnet" / "noun_glosses.tsv", newline="", encoding="utf-8") as f:
        return [f"{r['lemma']}: {r['gloss']}" for r in csv.DictReader(f, delimiter="\t")]


def train_tokenizer(texts: list[str], vocab: int):
    """A byte-level BPE tokenizer (Hugging Face ``tokenizers``, as GPT-2's) trained on ``texts``, with
    ``EOS`` as its first token. Deterministic for the same texts and size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def token_stream(tokenizer, texts: list[str]) -> np.ndarray:
    """All texts encoded and joined by ``EOS``, as int32."""
    eos = tokenizer.token_to_id(EOS)
    ids: list[int] = []
    for enc in tokenizer.encode_batch(texts):
        ids += enc.ids
        ids.append(eos)
    return np.asarray(ids, dtype=np.int32)


def stream_batches(stream: np.ndarray, n_batches: int, batch: int, seq_len: int, seed: int = 0):
    """``n_batches`` (inputs, next-token targets) pairs of ``batch`` windows at random offsets of ``stream``."""
    if len(stream) <= seq_len + 1:
        raise ValueError(f"a stream of {len(stream)} tokens is too short for windows of {seq_len}")
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        starts = torch.randint(0, len(stream) - seq_len - 1, (batch,), generator=g).tolist()
        windows = torch.from_numpy(np.stack([stream[s : s + seq_len + 1] for s in starts]).astype(np.int64))
        out.append((windows[:, :-1].contiguous(), windows[:, 1:].contiguous()))
    return out


def n_parameters(n_blocks: int, d_model: int, n_heads: int, vocab: int, seq_len: int) -> int:
    """Parameters of the chain (without building it)."""
    per_block = 12 * d_model * d_model + 13 * d_model
    return vocab * d_model * 2 + max(N_POSITIONS, seq_len) * d_model + n_blocks * per_block + 2 * d_model


def main() -> None:
    """``python -m replab.edge.llm --out tokens.npy``: the gloss token stream a ``gpt2`` pipeline config reads
    (e.g. for ``replab target pipeline`` across attached devices)."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    p.add_argument("--data", default="data", help="the project's data folder (WordNet glosses)")
    p.add_argument("--vocab", type=int, default=GPT2_SMALL["vocab"])
    p.add_argument("--out", required=True)
    a = p.parse_args()
    texts = gloss_texts(a.data)
    stream = token_stream(train_tokenizer(texts, a.vocab), texts)
    np.save(a.out, stream)
    print(f"{a.out}: {len(stream):,} tokens, vocabulary {a.vocab:,}")


if __name__ == "__main__":
    main()


__all__ = [
    "EOS",
    "GPT2_SMALL",
    "find_cached_gpt2",
    "gloss_texts",
    "gpt2_config",
    "gpt2_layers",
    "load_checkpoint",
    "n_parameters",
    "stream_batches",
    "token_stream",
    "train_tokenizer",
]

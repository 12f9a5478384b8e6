"""`python -m seqlab.sample`: text generation from a word-level language model (also the
`TextSampleLogger` callback's)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from seqlab.data.text import EOS, UNK, Vocabulary
from seqlab.models.language_model import LanguageModelNet, generate

log = logging.getLogger(__name__)


def encode_prompt(vocab: Vocabulary, prompt: str) -> list[int]:
    """Prompt words -> ids; words the vocabulary lacks become <unk>, with one warning naming them."""
    words = prompt.split() or [EOS]  # an empty prompt starts a new sentence
    unknown = sorted({w for w in words if w not in vocab})
    if unknown:
        log.warning("Not in the vocabulary, read as %s: %s", UNK, ", ".join(unknown))
    return vocab.encode(words)


def sample_text(
    net: LanguageModelNet,
    vocab: Vocabulary,
    prompt: str = "the",
    num_words: int = 50,
    *,
    strategy: str = "multinomial",
    temperature: float = 1.0,
    top_k: int = 40,
    seed: int | None = 0,
) -> str:
    """The prompt followed by `num_words` generated words, each `<eos>` shown as a line break."""
    generator = torch.Generator(device=next(net.parameters()).device)
    if seed is not None:
        generator.manual_seed(seed)
    was_training = net.training
    net.eval()
    try:
        ids = encode_prompt(vocab, prompt)
        more = generate(
            net, ids, num_words, strategy=strategy, temperature=temperature, top_k=top_k, generator=generator
        )
        words = vocab.decode(ids + more)
    finally:
        net.train(was_training)
    return " ".join(words).replace(f" {EOS} ", "\n").replace(f" {EOS}", "\n").replace(f"{EOS} ", "\n")


def sample_from_checkpoint(cfg: DictConfig) -> str:
    """`python -m seqlab.sample`: text from a language model checkpoint, printed (and written to `out`)."""
    from seqlab.restore import restore_for_tool
    from seqlab.tasks import LanguageModel

    _, datamodule, task = restore_for_tool(
        cfg,
        "sampling needs a language model checkpoint, e.g. from experiment=ptb_lab",
        lambda task, _: isinstance(task, LanguageModel),
    )
    text = sample_text(
        task.net,
        datamodule.vocab,
        prompt=cfg.prompt,
        num_words=cfg.num_words,
        strategy=cfg.strategy,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        seed=cfg.seed,
    )
    print(text)
    if cfg.out:
        Path(cfg.out).write_text(text + "\n")
    return text

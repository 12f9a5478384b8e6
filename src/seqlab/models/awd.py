"""AWD-LSTM's parts (Merity et al. 2017, https://arxiv.org/abs/1708.02182): weight drop, locked dropout,
embedding dropout (section 4.3; the text classifier's `embed_dropout` uses it too), and the language
model that joins them with per-layer sizes and tied weights."""

from __future__ import annotations

import warnings

import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from seqlab.errors import check_dropout, check_positive


class LockedDropout(nn.Module):
    """Variational dropout: one mask per sequence, shared by every time step, for (B, T, F) inputs."""

    def __init__(self, p: float) -> None:
        super().__init__()
        check_dropout(p)
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - self.p) / (1 - self.p)
        return x * mask


def embedding_dropout(embedding: nn.Embedding, ids: Tensor, p: float, training: bool) -> Tensor:
    """Look up `ids` with whole words dropped: each row of the embedding matrix is kept (scaled by
    1 / (1 - p)) or zeroed, for every occurrence of that word in the batch."""
    if not training or p == 0:
        return embedding(ids)
    weight = embedding.weight
    mask = weight.new_empty(weight.size(0), 1).bernoulli_(1 - p) / (1 - p)
    return embedding(ids) * mask[ids]  # the rows looked up, not the whole matrix: large vocabularies


class WeightDropLSTM(nn.Module):
    """One fused LSTM layer with DropConnect on its hidden-to-hidden weights: one mask per forward call
    (over the whole window), drawn on the raw weights; the kernel runs on the masked copy, passed for the
    call only (torch.func.functional_call), so the module's own weights are never replaced."""

    def __init__(self, input_dim: int, hidden_dim: int, weight_drop: float) -> None:
        super().__init__()
        check_dropout(weight_drop, "weight_drop")
        self.lstm, self.weight_drop = nn.LSTM(input_dim, hidden_dim, batch_first=True), weight_drop

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if not self.training or self.weight_drop == 0:
            return self.lstm(x, state)
        dropped = F.dropout(self.lstm.weight_hh_l0, self.weight_drop, training=True)
        with warnings.catch_warnings():  # cuDNN: the masked copy is not in the flattened weight buffer
            warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
            return functional_call(self.lstm, {"weight_hh_l0": dropped}, (x, state))


class AWDLanguageModelNet(nn.Module):
    """embedding (embedding dropout, locked dropout `input_dropout`) -> LSTM layers of their own sizes
    (weight drop; locked dropout `hidden_dropout` between them) -> locked dropout `dropout` -> decoder.

    The last layer has `embed_dim` units so that the decoder can share the embedding (`tie_weights`).
    The state is a flat tuple (h_1, c_1, h_2, c_2, ...): layers of different sizes do not stack.
    `forward(ids, state, with_activations=True)` also returns the last layer's output before and after
    its dropout, which AR and TAR penalise.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 400,
        hidden_dim: int = 1150,
        num_layers: int = 3,
        dropout: float = 0.4,
        hidden_dropout: float = 0.25,
        input_dropout: float = 0.4,
        embedding_dropout: float = 0.1,
        weight_drop: float = 0.5,
        tie_weights: bool = True,
    ) -> None:
        super().__init__()
        check_positive(
            vocab_size=vocab_size, embed_dim=embed_dim, hidden_dim=hidden_dim, num_layers=num_layers
        )
        for name, p in (
            ("dropout", dropout),
            ("hidden_dropout", hidden_dropout),
            ("input_dropout", input_dropout),
            ("embedding_dropout", embedding_dropout),
        ):
            check_dropout(p, name)
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        sizes = [embed_dim] + [hidden_dim] * (num_layers - 1) + [embed_dim if tie_weights else hidden_dim]
        self.layers = nn.ModuleList(
            WeightDropLSTM(a, b, weight_drop) for a, b in zip(sizes, sizes[1:], strict=False)
        )
        self.input_drop, self.hidden_drop = LockedDropout(input_dropout), LockedDropout(hidden_dropout)
        self.output_drop = LockedDropout(dropout)
        self.embedding_dropout = embedding_dropout
        self.decoder = nn.Linear(sizes[-1], vocab_size)
        if tie_weights:
            self.decoder.weight = self.embedding.weight

    def forward(
        self, ids: Tensor, state: tuple[Tensor, ...] | None = None, with_activations: bool = False
    ) -> tuple:
        x = self.input_drop(embedding_dropout(self.embedding, ids, self.embedding_dropout, self.training))
        finals: list[Tensor] = []
        for i, layer in enumerate(self.layers):
            x, (h, c) = layer(x, None if state is None else (state[2 * i], state[2 * i + 1]))
            finals += [h, c]
            raw = x
            if i < len(self.layers) - 1:
                x = self.hidden_drop(x)
        dropped = self.output_drop(raw)
        logits = self.decoder(dropped)
        return (logits, tuple(finals), (raw, dropped)) if with_activations else (logits, tuple(finals))

    def optimizer_settings(self) -> dict[str, dict[str, object]]:
        """The paper's weight decay (1.2e-6) acts on every parameter, biases included."""
        return {name: {"decay": True} for name, _ in self.named_parameters()}

    @property
    def encoder(self) -> nn.ModuleList:
        """The recurrent layers (what error messages about the cell name)."""
        return self.layers

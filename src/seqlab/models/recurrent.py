"""Recurrent building blocks shared by every task: a hand-written RNN and one encoder over all cells."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seqlab.errors import check_choice, check_dropout, check_positive
from seqlab.models.registry import Encoder, register_encoder

State = Tensor | tuple[Tensor, Tensor]


class OwnRNN(nn.Module):
    """The Elman RNN written out for teaching: h_t = tanh(W x_t + U h_{t-1} + b).

    Parameters carry nn.RNN's names and shapes (b is split into bias_ih + bias_hh as there), so a
    state dict moves between the two. Batch-first. With a mask, padded steps leave h unchanged, so
    the final state is the one at each sequence's true end whichever side the padding is on.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        self.hidden_size, self.num_layers, self.dropout = hidden_size, num_layers, dropout
        self.directions = ("", "_reverse") if bidirectional else ("",)
        k = hidden_size**-0.5  # nn.RNN's default init range
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else hidden_size * len(self.directions)
            for suffix in self.directions:
                for name, shape in (
                    ("weight_ih", (hidden_size, in_size)),
                    ("weight_hh", (hidden_size, hidden_size)),
                    ("bias_ih", (hidden_size,)),
                    ("bias_hh", (hidden_size,)),
                ):
                    p = nn.Parameter(torch.empty(shape).uniform_(-k, k))
                    self.register_parameter(f"{name}_l{layer}{suffix}", p)

    def _run(
        self, x: Tensor, h: Tensor, mask: Tensor | None, layer: int, suffix: str
    ) -> tuple[Tensor, Tensor]:
        p = lambda name: getattr(self, f"{name}_l{layer}{suffix}")  # noqa: E731
        wx = x @ p("weight_ih").T + p("bias_ih") + p("bias_hh")  # input part for all steps at once
        u = p("weight_hh").T
        steps = range(x.size(1) - 1, -1, -1) if suffix else range(x.size(1))
        outputs: list[Tensor] = [None] * x.size(1)  # type: ignore[list-item]
        for t in steps:
            h_new = torch.tanh(wx[:, t] + h @ u)
            h = h_new if mask is None else torch.where(mask[:, t, None], h_new, h)
            outputs[t] = h if mask is None else h * mask[:, t, None]
        return torch.stack(outputs, dim=1), h

    def forward(
        self, x: Tensor, h0: Tensor | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        n_dir = len(self.directions)
        if h0 is None:
            h0 = x.new_zeros(self.num_layers * n_dir, x.size(0), self.hidden_size)
        finals = []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0:
                x = nn.functional.dropout(x, self.dropout, self.training)
            outs = []
            for d, suffix in enumerate(self.directions):
                out, h = self._run(x, h0[layer * n_dir + d], mask, layer, suffix)
                outs.append(out)
                finals.append(h)
            x = torch.cat(outs, dim=-1)
        return x, torch.stack(finals)


def float_state(state: State | None) -> State | None:
    if isinstance(state, tuple):
        return tuple(s.float() for s in state)
    return None if state is None else state.float()


def run_fused_cell(rnn: nn.Module, x: Tensor | PackedSequence, state: State | None) -> tuple:
    """`rnn(x, state)`; under CPU autocast in float32. oneDNN has no bf16 RNN kernel on many CPUs
    (AVX2-only ones fail with "could not create a primitive descriptor"), and autocast has no fp32 rule
    for RNNs: the cell runs in float32 there, everything around it as the precision setting asks."""
    data = x.data if isinstance(x, PackedSequence) else x
    if data.device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
        return rnn(x, state)
    with torch.autocast("cpu", enabled=False):
        return rnn(x.float(), float_state(state))


def reorder_rows(state: State | None, index: Tensor) -> State | None:
    """A recurrent state, (layers x directions, B, H) or an LSTM's pair of them, with its rows picked."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return None if state is None else state.index_select(1, index)


def align_right(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Rows rotated so that their real steps come first: (x, lengths, shift), on x's device.

    Left-padded rows rotate by their padding, right-padded ones by 0; `undo_align` turns outputs back.
    (Asking first whether any row needs it would stall a GPU every batch.)
    """
    lengths = mask.sum(1).clamp(min=1)  # an empty row keeps one pad step
    mask, lengths = mask.to(x.device, non_blocking=True), lengths.to(x.device, non_blocking=True)
    steps = torch.arange(x.size(1), device=x.device)
    shift = torch.where(mask[:, 0], 0, x.size(1) - lengths)[:, None]
    return x.gather(1, ((steps + shift) % x.size(1))[..., None].expand_as(x)), lengths, shift


def undo_align(out: Tensor, shift: Tensor) -> Tensor:
    steps = torch.arange(out.size(1), device=out.device)
    return out.gather(1, ((steps - shift) % out.size(1))[..., None].expand_as(out))


def at_true_end(seq: Tensor, lengths: Tensor | None) -> Tensor:
    """(B, T, N) -> (B, N): each row's entry at its last real step (the last step without lengths)."""
    if lengths is None:
        return seq[:, -1]
    return seq.gather(1, (lengths - 1)[:, None, None].expand(-1, 1, seq.size(2))).squeeze(1)


def zero_padding(out: Tensor, lengths: Tensor) -> Tensor:
    """Right-aligned outputs with the steps past each row's length zeroed."""
    return out * (torch.arange(out.size(1), device=out.device) < lengths[:, None])[..., None]


class RecurrentEncoder(Encoder):
    """One encoder over `rnn | lstm | gru | own_rnn`, batch-first.

    forward(x, mask, state) -> (outputs, state). `mask` (B, T, True on real steps) marks padding; it may lie
    on the host while x is on a GPU (packing reads the lengths there without waiting for the GPU). With
    `pack` (the default) padding never reaches a real step's output or the top layer's final hidden
    state, on either side: bidirectional fused cells run on a packed batch, unidirectional ones run
    causally over right-aligned rows (exact, and faster than packing), `own_rnn` skips padded steps.
    `pack=False` runs over the padding as a plain loop would (the course's way), which is right for
    last-step pooling only with left padding.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int = 128,
        num_layers: int = 1,
        cell: str = "lstm",
        dropout: float = 0.0,
        bidirectional: bool = False,
        pack: bool = True,
        chrono: int | None = None,
        forget_bias: float | None = None,
    ) -> None:
        super().__init__()
        check_choice("cell", cell, ("rnn", "lstm", "gru", "own_rnn"))
        check_positive(input_dim=input_dim, hidden_dim=hidden_dim, num_layers=num_layers)
        check_dropout(dropout)
        self.cell, self.hidden_dim, self.num_layers, self.pack = cell, hidden_dim, num_layers, pack
        self.num_directions = 2 if bidirectional else 1
        dropout = dropout if num_layers > 1 else 0.0  # between layers only, as nn.RNN does
        if cell == "own_rnn":
            self.rnn: nn.Module = OwnRNN(input_dim, hidden_dim, num_layers, dropout, bidirectional)
        else:
            rnn_cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
            self.rnn = rnn_cls(
                input_dim,
                hidden_dim,
                num_layers,
                batch_first=True,
                dropout=dropout,
                bidirectional=bidirectional,
            )
        if chrono is not None or forget_bias is not None:
            init_keep_gate(self.rnn, cell, hidden_dim, chrono, forget_bias)

    @property
    def output_dim(self) -> int:
        return self.hidden_dim * self.num_directions

    def forward(
        self, x: Tensor, mask: Tensor | None = None, state: State | None = None
    ) -> tuple[Tensor, State]:
        if mask is None or not self.pack:
            return self._run(x, state)
        if self.cell == "own_rnn":
            return self.rnn(x, state, mask.to(x.device, non_blocking=True))
        # Packing needs the lengths on the host: taken from a mask there (where the data modules keep
        # it), they make nothing wait for a GPU; from a mask on a GPU, .cpu() waits for it.
        host_lengths = mask.sum(1).clamp(min=1).cpu() if self.num_directions == 2 else None
        x, lengths, shift = align_right(x, mask)
        if self.num_directions == 1:
            # Causal: a step's output never depends on later (padding) steps, so running over the right
            # padding and reading each row at its true end is exact, and 5-10x faster than packing on
            # a CPU. Only the top layer's final hidden state is read from the outputs; the other
            # layers' final states of padded rows are those after the padding.
            out, state = self._run(x, state)
            last = at_true_end(out, lengths)
            h = state[0] if isinstance(state, tuple) else state
            h = torch.cat([h[:-1], last[None]])
            state = (h, state[1]) if isinstance(state, tuple) else h
            out = zero_padding(out, lengths)
        else:  # the reverse direction starts at the end: pack so that it starts at each row's true end
            out, state = self._run_packed(x, host_lengths, state)
        return undo_align(out, shift), state

    def _run(self, x: Tensor | PackedSequence, state: State | None) -> tuple:
        return self.rnn(x, state) if self.cell == "own_rnn" else run_fused_cell(self.rnn, x, state)

    def _run_packed(self, x: Tensor, host_lengths: Tensor, state: State | None) -> tuple[Tensor, State]:
        """The fused cell over the packed rows. The rows are put in order of length, and back, with
        indices made on the host (torch's own reordering reads its indices back from the device)."""
        order = host_lengths.argsort(descending=True)
        sorted_lengths, back = host_lengths[order], order.argsort()
        order, back = order.to(x.device, non_blocking=True), back.to(x.device, non_blocking=True)
        packed = pack_padded_sequence(x.index_select(0, order), sorted_lengths, batch_first=True)
        out, state = self._run(packed, reorder_rows(state, order))
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return out.index_select(0, back), reorder_rows(state, back)

    def last_hidden(self, state: State) -> Tensor:
        """The top layer's final hidden state, both directions concatenated: (B, output_dim)."""
        h = state[0] if isinstance(state, tuple) else state
        return torch.cat(list(h[-self.num_directions :]), dim=-1)

    def pool_last(self, out: Tensor, state: State, mask: Tensor | None) -> Tensor:
        """What `last` pooling reads: the final hidden state (at each row's true end)."""
        return self.last_hidden(state)


def init_keep_gate(
    rnn: nn.Module, cell: str, hidden_dim: int, chrono: int | None, forget_bias: float | None
) -> None:
    """The bias of the gate that keeps the state: LSTM's forget gate, GRU's update gate z (in torch,
    h = (1 - z) n + z h). `chrono=T_max` (Tallec & Ollivier 2018): b ~ log U(1, T_max - 1), so the units
    start remembering over 1 to T_max steps (and the LSTM's input gate -b); `forget_bias`: one value
    (Jozefowicz et al. 2015 use 1). The hidden-to-hidden bias of those gates starts at 0."""
    if chrono is not None and (isinstance(chrono, bool) or not isinstance(chrono, int) or chrono < 3):
        raise ValueError(f"chrono={chrono!r}: T_max, the longest memory to start with, an integer >= 3")
    if chrono is not None and forget_bias is not None:
        raise ValueError("chrono and forget_bias both set the keep gate's bias: give one of them")
    keep = {"lstm": 1, "gru": 1}[cell]  # the gate's chunk: LSTM (i, f, g, o), GRU (r, z, n)
    h = hidden_dim
    with torch.no_grad():
        for name, bias in rnn.named_parameters():
            if not name.startswith("bias_"):
                continue
            gate = bias[keep * h : (keep + 1) * h]
            if name.startswith("bias_hh"):
                gate.zero_()
            elif chrono is not None:
                gate.copy_(torch.log(torch.empty(h).uniform_(1, chrono - 1)))
                if cell == "lstm":
                    bias[:h] = -gate
                    rnn.get_parameter(name.replace("bias_ih", "bias_hh"))[:h].zero_()
            else:
                gate.fill_(forget_bias)


def plain(cell: str, doc: str):
    """The builder of an ungated fused cell: its one setting is `pack` (see RecurrentEncoder)."""

    def build(
        input_dim: int,
        hidden_dim: int = 128,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        pack: bool = True,
    ) -> RecurrentEncoder:
        return RecurrentEncoder(input_dim, hidden_dim, num_layers, cell, dropout, bidirectional, pack)

    build.__doc__ = doc
    return build


def gated(cell: str, doc: str):
    """The builder of a gated fused cell: `pack`, and `chrono`/`forget_bias` for the gate that keeps the
    state (init_keep_gate; both null keep torch's init)."""

    def build(
        input_dim: int,
        hidden_dim: int = 128,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        pack: bool = True,
        chrono: int | None = None,
        forget_bias: float | None = None,
    ) -> RecurrentEncoder:
        return RecurrentEncoder(
            input_dim, hidden_dim, num_layers, cell, dropout, bidirectional, pack, chrono, forget_bias
        )

    build.__doc__ = doc
    return build


register_encoder("rnn", plain("rnn", "Elman's RNN (torch's fused nn.RNN, tanh)."))
register_encoder(
    "own_rnn", plain("own_rnn", "The Elman RNN written out step by step (OwnRNN), for teaching.")
)
register_encoder("lstm", gated("lstm", "Hochreiter & Schmidhuber's LSTM (nn.LSTM)."))
register_encoder("gru", gated("gru", "Cho et al.'s GRU (nn.GRU)."))

"""parity_lab: an example project on seqlab (a cell and a data module of its own, plus configs)."""

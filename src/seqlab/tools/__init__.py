"""What each tool command does on a trained model: `seqlab/tools/<command>.py` for `python -m
seqlab.<command>` (attack, embeddings, predict, sample), its Hydra entry point in `seqlab/cli.py`.
Callbacks use them too (`TextSampleLogger` samples text as `seqlab.sample` does)."""

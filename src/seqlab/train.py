"""`python -m seqlab.train`: the entry point `seqlab.cli.train_main` (this file only gives `-m` its name)."""

from seqlab.cli import train_main

if __name__ == "__main__":
    train_main()

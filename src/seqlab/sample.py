"""`python -m seqlab.sample`: the entry point `seqlab.cli.sample_main` (this file only gives `-m` its name)."""

from seqlab.cli import sample_main

if __name__ == "__main__":
    sample_main()

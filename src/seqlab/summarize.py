"""`python -m seqlab.summarize`: the entry point `seqlab.cli.summarize_main` (this file only gives `-m` its name)."""

from seqlab.cli import summarize_main

if __name__ == "__main__":
    summarize_main()

"""`python -m seqlab.eval`: the entry point `seqlab.cli.eval_main` (this file only gives `-m` its name)."""

from seqlab.cli import eval_main

if __name__ == "__main__":
    eval_main()

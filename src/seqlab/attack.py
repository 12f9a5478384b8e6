"""`python -m seqlab.attack`: the entry point `seqlab.cli.attack_main` (this file only gives `-m` its name)."""

from seqlab.cli import attack_main

if __name__ == "__main__":
    attack_main()

"""`python -m seqlab.embeddings`: the entry point `seqlab.cli.embeddings_main` (this file only gives `-m` its name)."""

from seqlab.cli import embeddings_main

if __name__ == "__main__":
    embeddings_main()

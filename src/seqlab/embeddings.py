"""`python -m seqlab.embeddings`: the entry point lives in `seqlab.cli.embeddings`."""

from seqlab.cli.embeddings import main

if __name__ == "__main__":
    main()

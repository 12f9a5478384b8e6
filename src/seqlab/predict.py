"""`python -m seqlab.predict`: the entry point `seqlab.cli.predict_main` (this file only gives `-m` its name)."""

from seqlab.cli import predict_main

if __name__ == "__main__":
    predict_main()

"""`python -m seqlab.train`: the entry point lives in `seqlab.cli.train`."""

from seqlab.cli.train import main

if __name__ == "__main__":
    main()

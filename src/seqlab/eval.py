"""`python -m seqlab.eval`: the entry point lives in `seqlab.cli.eval`."""

from seqlab.cli.eval import main

if __name__ == "__main__":
    main()

"""`python -m seqlab.attack`: the entry point lives in `seqlab.cli.attack`."""

from seqlab.cli.attack import main

if __name__ == "__main__":
    main()

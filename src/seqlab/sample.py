"""`python -m seqlab.sample`: the entry point lives in `seqlab.cli.sample`."""

from seqlab.cli.sample import main

if __name__ == "__main__":
    main()

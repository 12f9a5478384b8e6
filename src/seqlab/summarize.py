"""`python -m seqlab.summarize`: runs the entry point `seqlab.cli.summarize.main`.

This file only gives `-m` its name; the command lives in `seqlab.cli` with the others, defined once for
`-m` and the `seqlab-summarize` console script."""

from seqlab.cli.summarize import main

if __name__ == "__main__":
    main()

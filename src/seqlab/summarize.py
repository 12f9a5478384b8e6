"""`python -m seqlab.summarize`: the entry point lives in `seqlab.cli.summarize`."""

from seqlab.cli.summarize import main

if __name__ == "__main__":
    main()

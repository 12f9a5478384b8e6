"""`python -m seqlab.predict`: the entry point lives in `seqlab.cli.predict`."""

from seqlab.cli.predict import main

if __name__ == "__main__":
    main()

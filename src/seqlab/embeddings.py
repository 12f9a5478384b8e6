"""`python -m seqlab.embeddings`: runs the entry point `seqlab.cli.embeddings.main`.

This file only gives `-m` its name. Run with `-m` a module is `__main__`, so the Hydra app does not live
here: in `seqlab.cli.embeddings` it is defined once for `-m` and the `seqlab-embeddings` console script, under a
name that a launcher pickling the task function (submitit's, `hydra/launcher=slurm`) imports."""

from seqlab.cli.embeddings import main

if __name__ == "__main__":
    main()

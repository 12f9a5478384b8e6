"""`python -m seqlab.predict`: runs the entry point `seqlab.cli.predict.main`.

This file only gives `-m` its name. Run with `-m` a module is `__main__`, so the Hydra app does not live
here: in `seqlab.cli.predict` it is defined once for `-m` and the `seqlab-predict` console script, under a
name that a launcher pickling the task function (submitit's, `hydra/launcher=slurm`) imports."""

from seqlab.cli.predict import main

if __name__ == "__main__":
    main()

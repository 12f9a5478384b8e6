"""A run dir's life, in the order it happens (one module each):

1. claims.py: the run claims its dir (`.seqlab_claim.json`) before anything is written; a second live
   process is refused, a dead owner's claim is taken over on `resume=true` or a SLURM requeue.
2. resume.py: what the dir already holds decides the start (resume from `checkpoints/last.ckpt`,
   fall back past a damaged one, or refuse to overwrite); checkpoints.py writes checkpoints atomically.
3. While training, `seqlab.callbacks.history` rewrites `history.csv` after each epoch, and
   `seqlab.callbacks.preemption` turns SIGTERM/SIGUSR1 into a checkpoint and a clean stop.
4. records.py: the end leaves `metrics.json` and `machine.txt`, a failure `error.json` (a stop signal's
   message, STOPPED, marks it resumable); the claim is released.
"""

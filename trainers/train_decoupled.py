"""Run one refinement round (DecoupledNet) on one or many processes: a thin launcher over
``spn-napari round``.

    torchrun --nproc_per_node 4 trainers/train_decoupled.py PROJECT [--epochs 10 --batch-size 8 ...]

Training is sharded with DistributedDataParallel (NCCL on GPUs, gloo on CPU); rank 0 alone
predicts the new labels and commits the round. ``--state FILE`` resumes an interrupted run.
"""

import sys

from spn_napari.cli import main

if __name__ == "__main__":
    sys.exit(main(["round", *sys.argv[1:]]))

"""Train the SPN on one or many processes: a thin launcher over ``spn-napari train-spn``.

    torchrun --nproc_per_node 4 trainers/train_spn.py PROJECT [--epochs 30 --batch-size 8 ...]

Every process trains on its shard of each global batch (batch size × processes) with
DistributedDataParallel (NCCL on GPUs, gloo on CPU); rank 0 alone writes the checkpoint. The
options are `spn-napari train-spn`'s (see ``--help``); ``--state FILE`` resumes an interrupted run.
"""

import sys

from spn_napari.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-spn", *sys.argv[1:]]))

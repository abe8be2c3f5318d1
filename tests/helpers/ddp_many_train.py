"""Several ``peftlab train`` runs in one multi-process launch, for tests/test_distributed.py.

A launch costs the process start-up and the process group once, however many methods
it trains; each run is the ordinary ``peftlab train`` command. Launch it with
``accelerate launch --multi_gpu --num_processes 2 ddp_many_train.py RUNS.json``, where
RUNS.json holds a list of argument lists (those of ``peftlab train``, one per run).
"""

import json
import sys

from peftlab.cli import main

for argv in json.loads(open(sys.argv[1]).read()):
    rc = main(["train", *argv])
    if rc:
        sys.exit(rc)

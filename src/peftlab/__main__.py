"""``python -m peftlab`` and the ``peftlab`` command: the process is moved onto mimalloc
first where it is installed (:mod:`peftlab.host.malloc`), before torch is imported."""

import sys


def main() -> int:
    from .host import malloc

    malloc.reexec(sys.argv[1:])
    from .cli import main as run

    return run()


if __name__ == "__main__":
    sys.exit(main())

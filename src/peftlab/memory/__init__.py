"""Memory: where a training step's memory goes (:mod:`.measure`), what a run will need
before anything loads (:mod:`.planner`, ``peftlab plan``), and ``--max-memory``
(:mod:`.cap`)."""

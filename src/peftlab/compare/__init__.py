"""The comparison: a harness that trains every method on one budget, and the report
(Markdown, HTML, charts) built from its results."""

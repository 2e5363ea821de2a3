"""Reports: report.md with plots, HTML feature pages, and the final console summary (`autointerp report`).

Reads only the run directory's artifacts (see ``artifacts``); sections whose inputs are missing name
the command that produces them.
"""

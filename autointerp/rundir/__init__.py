"""The run directory: every path and file name (``layout``), the stage record and its one policy (``record``),
the lock that keeps two processes out of one directory (``lock``) and the exemplar windows that several
stages read (``windows``)."""

from autointerp.rundir.layout import ModelDir, PairDir, ReportDir, RunDir, SAEFiles, ShardPaths

__all__ = ["ModelDir", "PairDir", "ReportDir", "RunDir", "SAEFiles", "ShardPaths"]

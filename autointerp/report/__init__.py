"""Reports: markdown, plots and HTML feature pages (planned)."""

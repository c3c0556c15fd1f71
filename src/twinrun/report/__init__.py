"""Renderings of runs, verdicts and studies: terminal (Rich), JSON, HTML."""

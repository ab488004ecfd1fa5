"""Reproducing cross-domain tables: cells, aggregation, reference numbers, outputs."""

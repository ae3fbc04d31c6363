"""Refinement rounds: a DecoupledNet trained on the current labels, and its predictions."""

"""Layers shared by more than one paper."""

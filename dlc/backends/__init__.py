"""Backends: turn a differentiated program into something that runs."""

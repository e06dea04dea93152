"""Sweeps: many training runs of one model, over a grid of settings and seeds (``dlc sweep``).

:func:`dlc.sweep` is the Python entry point; :mod:`dlc.sweeps.sweep` runs a
sweep, :mod:`dlc.sweeps.local` and :mod:`dlc.sweeps.ray_pool` are its two
executors, and :mod:`dlc.sweeps.results` keeps its folder and its table.
"""

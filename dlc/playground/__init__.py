"""``dlc play``: a live page where a model trains, with its derived formulas beside it.

:class:`~dlc.playground.session.Session` trains (on a thread of its own),
:mod:`dlc.playground.views` turns its snapshots into pictures and formulas, and
:mod:`dlc.playground.server` serves the page (``dlc/playground/static``) on 127.0.0.1.
"""

"""``dlc play``: a live page where a model trains, with its derived formulas beside it.

:class:`~dlc.play.session.Session` trains (on a thread of its own),
:mod:`dlc.play.views` turns its snapshots into pictures and formulas, and
:mod:`dlc.play.server` serves the page (``dlc/play/static``) on 127.0.0.1.
"""

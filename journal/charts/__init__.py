"""Charts as inline SVG, drawn on the server from numbers already computed.

``svg`` builds escaped markup; ``percent`` draws a pupil's term percent week by week (one small
panel per subject, with the grade bands as guides); ``heatmap`` draws a class's attendance by
school day as a calendar. These three are pure (no database, no Flask, type-checked with the
other pure cores): every text they show arrives translated from the caller, and every text is
escaped. ``series`` reads the numbers from a class journal and ``pages`` turns them into the
translated charts the portal and the class summary show.

What every chart does, so that it reads without a script, in print and with a screen reader:
``role="img"`` with a ``<title>`` and a ``<desc>`` that states the numbers; colours with enough
contrast that also differ in lightness, plus labels or patterns, so a grayscale printout keeps
the meaning; presentation attributes only (the Content-Security-Policy allows no ``style=``).
"""

"""Representation-alignment losses: SuRA (subject, `sura.py`) and MoRA (motion, `mora.py`)."""

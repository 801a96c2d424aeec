"""Trainers: shared run-folder/checkpoint/loop code (`common.py`) and the subject stage (`subject.py`)."""

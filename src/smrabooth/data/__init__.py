"""Training data: folder readers (`folders.py`) and subject image transforms + caches (`subject.py`)."""

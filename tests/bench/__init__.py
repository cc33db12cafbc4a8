"""`make bench`: Corrigo's speed measured side by side with the physical limit.

Run with `python -m tests.bench` (see `__main__`). Nothing here is collected by pytest:
no file is named test_*.py, and none of it asserts a speed.
"""

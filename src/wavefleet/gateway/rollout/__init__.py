"""`wave rollout`: a new model version beside the old, proved on live traffic, promoted or rolled back.

state.py (the record), store.py (SQLite), split.py (the traffic split and live metrics per version),
live.py (criteria), controller.py (the task that runs it), routes.py (the admin API).
"""

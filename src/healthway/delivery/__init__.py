"""Delivery: the worker loop that drains the queue, and one Sender per destination kind."""

"""Validation against the real disk: replay IOPlans with the reader, predict them with the
device model, report; fio export."""

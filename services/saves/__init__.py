"""The saves worker: applies player and game saves from `stream:saves`."""

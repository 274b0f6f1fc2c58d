"""The leaderboard worker: applies score submissions from `stream:scores`, and announces new tops."""

from services.leaderboard.handlers import handlers, index_members, sweep
from shared.cli import start
from shared.protocol import SCORES
from shared.worker import run_worker

if __name__ == "__main__":
    settings = start("python -m services.leaderboard", "Apply score submissions from stream:scores.")
    run_worker(SCORES, handlers, settings, sweep, index_members)

from services.leaderboard.handlers import handlers, index_members
from shared.cli import start
from shared.protocol import SCORES
from shared.worker import run_worker

if __name__ == "__main__":
    settings = start("python -m services.leaderboard", "Apply score submissions from stream:scores.")
    run_worker(SCORES, handlers, settings, index_members)

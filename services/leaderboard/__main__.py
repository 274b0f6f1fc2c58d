from services.leaderboard.handlers import handlers
from shared.cli import start
from shared.protocol import SCORES
from shared.worker import run_worker

if __name__ == "__main__":
    run_worker(SCORES, handlers, start("python -m services.leaderboard", "Apply score submissions from stream:scores."))

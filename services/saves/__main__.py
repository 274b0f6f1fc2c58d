from services.saves.handlers import handlers
from shared.cli import start
from shared.protocol import SAVES
from shared.worker import run_worker

if __name__ == "__main__":
    run_worker(SAVES, handlers, start("python -m services.saves", "Apply player and game saves from stream:saves."))

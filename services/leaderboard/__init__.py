"""The leaderboard worker: applies score submissions from `stream:scores`."""

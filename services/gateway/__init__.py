"""The gateway: sessions, every HTTP route, and the browser game's static files."""

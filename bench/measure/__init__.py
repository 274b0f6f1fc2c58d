"""What `python -m bench` measures with: load, processes, the machine, reports; the runner is bench/__main__.py."""

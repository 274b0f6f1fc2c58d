"""Another git revision of this repository, checked out so its services can run beside ours.

`git worktree add --detach` shares the repository's objects: a checkout takes a second and no
network, and moves no branch. The folder is removed when the ExitStack that made it closes, so
also when a run fails or is interrupted with Ctrl-C.
"""

from __future__ import annotations

import shutil
import subprocess
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench.measure.servers import ROOT

GIT_TIMEOUT_S = 120


class RevisionError(RuntimeError):
    pass


@dataclass(frozen=True)
class Revision:
    name: str  # as given: main, HEAD~3, a commit id
    commit: str
    short: str

    @property
    def label(self) -> str:
        """`main (f008e11)`, or the short commit alone when a commit id was given."""
        return self.short if self.commit.startswith(self.name) else f"{self.name} ({self.short})"


def git(*args: str) -> str:
    """Run git in this checkout; its output, or RevisionError with git's own last words."""
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        raise RevisionError(f"git {' '.join(args)}: {said[-1] if said else f'exit code {done.returncode}'}")
    return done.stdout.strip()


def resolve(name: str) -> Revision:
    """The commit `name` names now, resolved once so a branch moving during the run changes nothing."""
    try:
        commit = git("rev-parse", "--verify", "--end-of-options", f"{name}^{{commit}}")
    except RevisionError as error:
        raise RevisionError(f"{name!r} is not a git revision of this repository") from error
    return Revision(name, commit, git("rev-parse", "--short", commit))


def check_out(exits: ExitStack, revision: Revision, folder: Path) -> Path:
    """`revision` in `folder`, removed again when `exits` closes.

    The checkout's `.env` is this one's, if there is one: the services read it from their working
    directory, and both stacks must run with the same settings.
    """
    remove(folder)  # left behind by a run that was killed
    exits.callback(remove, folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    git("worktree", "add", "--detach", str(folder), revision.commit)
    if (ROOT / ".env").is_file():
        shutil.copyfile(ROOT / ".env", folder / ".env")
    return folder


def remove(folder: Path) -> None:
    """The checkout and git's record of it (also of a folder already gone); quiet, as it runs while unwinding."""
    subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=ROOT, capture_output=True, check=False)
    shutil.rmtree(folder, ignore_errors=True)  # what git left half made is no worktree it would remove


def sides(exits: ExitStack, compare: str | None, work: Path) -> dict[str, Path]:
    """The checkouts to measure by name: ours, and `compare`'s (checked out under `work`) if given."""
    found = {"ours": ROOT}
    if compare:
        revision = resolve(compare)
        found[revision.label] = check_out(exits, revision, work / "checkout")
    return found

"""Where workflow files come from: a git branch (fetched shallow into a cache) or a folder.

    source = GitSource("https://git.example/flows.git", "main", "", cache_root=home / "git")
    commit = source.fetch()                 # git fetch --depth 1 into a bare cache repository
    snapshot = source.snapshot(commit)      # git ls-tree at that commit: the workflow files
                                            # (paths, blob ids, sizes) and the folder's dwf.yaml
    raw = source.read([f.blob for f in snapshot.files if f.readable])   # git cat-file --batch

Files are read from git's object store at the fetched commit, never from a working tree that
might be half-written. Only regular files under the configured folder are ever read: symbolic
links (mode 120000) and submodules are listed as ignored and never followed, and git's pathspec
is literal, so no pattern can reach outside the folder. The git command line does the work:
no library to trust with credentials, and the operator's git configuration (credential
helpers, ssh keys) applies. Blocking calls: run them in a thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit, urlunsplit

from runner.errors import SourceError
from runner.lint.linter import YAML_SUFFIXES
from runner.spec.loader import MAX_FILE_BYTES
from runner.spec.repository import CONFIG_FILE

FETCH_TIMEOUT_SECONDS = 120.0
LOCAL_TIMEOUT_SECONDS = 60.0
#: Transports git may use for a source; `ext::` and friends could run commands.
ALLOWED_PROTOCOLS = "file:git:http:https:ssh"
REGULAR_MODES = frozenset({"100644", "100755"})
SYMLINK_MODE, SUBMODULE_MODE = "120000", "160000"
WORKFLOWS_FOLDER = "workflows"
# Errors that mean our cache repository is damaged (not the remote): wipe it and fetch again.
_CACHE_DAMAGE = (
    "corrupt", "bad object", "loose object", "index-pack", "unable to read", "not a git repository",
    "bad tree", "missing blob", "shallow", "inflate", "unable to unpack", "invalid object",
    "did not send all necessary objects",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A workflow file at a commit: path (from the repository root), blob id, size; `ignored`
    says why it is not read (a symbolic link, a submodule)."""

    path: str
    blob: str
    size: int
    ignored: str | None = None

    @property
    def readable(self) -> bool:
        """Whether its bytes are read and linted (a regular file within the size limit)."""
        return self.ignored is None and self.size <= MAX_FILE_BYTES


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a sync reads at a commit (or `dwf plan` in a checkout): the workflow files and the
    folder's dwf.yaml, if there is one (a link or submodule there is listed, as ignored)."""

    files: list[SourceFile]
    config: SourceFile | None = None


def display_url(url: str) -> str:
    """The repository URL without any password or token in it (what logs and rows record)."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        user, _, host = parts.netloc.rpartition("@")
        name = user.split(":", 1)[0]
        netloc = f"{name}@{host}" if ":" not in user and parts.scheme == "ssh" else host
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def check_folder(path: str) -> str:
    """The configured subfolder as a clean relative POSIX path ('' for the root); SourceError
    for an absolute path or one that climbs out with `..`."""
    text = path.strip().replace("\\", "/").strip("/")
    if text in ("", "."):
        return ""
    parts = PurePosixPath(text).parts
    if path.startswith("/") or any(p in ("..", ".") for p in parts):
        raise SourceError(
            f"the repository path {path!r} must be a folder inside the repository, "
            "written relative to its root (e.g. `flows` or `teams/ops`)"
        )
    return "/".join(parts)


def select(files: Iterable[SourceFile], folder: str) -> list[SourceFile]:
    """The workflow files among `files` (all under `folder`): like `dwf lint` on a folder, a
    folder holding `workflows/` means only that one is searched; *.yaml/*.yml only; hidden
    files and folders skipped, and the folder's own dwf.yaml. Sorted by path."""
    files = list(files)
    base = f"{folder}/" if folder else ""
    config = f"{base}{CONFIG_FILE}"
    nested = f"{base}{WORKFLOWS_FOLDER}/"
    if any(f.path.startswith(nested) for f in files):
        base = nested
    chosen = []
    for f in files:
        if not f.path.startswith(base) or not f.path.endswith(YAML_SUFFIXES) or f.path == config:
            continue
        if any(part.startswith(".") for part in f.path[len(base) :].split("/")):
            continue
        chosen.append(f)
    return sorted(chosen, key=lambda f: f.path)


def snapshot_of(files: Iterable[SourceFile], folder: str) -> Snapshot:
    """The workflow files among `files` (see `select`) and the folder's dwf.yaml."""
    files = list(files)
    config = f"{folder}/{CONFIG_FILE}" if folder else CONFIG_FILE
    return Snapshot(select(files, folder), next((f for f in files if f.path == config), None))


class GitSource:
    """A branch of a git repository (a URL or a local path), and the folder its workflows are in."""

    def __init__(self, url: str, branch: str, folder: str, *, cache_root: Path) -> None:
        if not url or url.startswith("-"):
            raise SourceError(f"the repository {url!r} is not a URL or a path")
        if not branch or branch.startswith("-") or any(c in branch for c in " ~^:?*[\\"):
            raise SourceError(f"the branch name {branch!r} is not a valid git branch name")
        self.url, self.branch, self.folder = url, branch, check_folder(folder)
        self.display = display_url(url)
        local = Path(url).expanduser()
        # A local path goes through file:// so that --depth applies (git ignores it otherwise).
        self._fetch_url = local.resolve().as_uri() if "://" not in url and local.exists() else url
        key = hashlib.sha256(self._fetch_url.encode()).hexdigest()[:16]
        self.cache = cache_root / key
        self._ref = f"refs/dwf/{branch}"

    def __repr__(self) -> str:
        return f"<GitSource {self.display} {self.branch} {self.folder or '.'}>"

    def fetch(self) -> str:
        """Fetch the branch's tip (depth 1) and return its commit id; SourceError saying why not
        (unreachable, no such branch, corrupt). A damaged cache is rebuilt once."""
        with self._locked():
            try:
                return self._fetch()
            except SourceError as exc:
                if not self.cache.exists() or not _cache_damage(str(exc)):
                    raise
            shutil.rmtree(self.cache, ignore_errors=True)
            return self._fetch()

    def snapshot(self, commit: str) -> Snapshot:
        """The workflow files of the commit under the folder (see `select`), symlinks included
        as ignored, and the folder's dwf.yaml."""
        args = ["ls-tree", "-r", "-l", "-z", "--full-tree", commit]
        if self.folder:
            args += ["--", self.folder]
        out = self._git(*args, timeout=LOCAL_TIMEOUT_SECONDS).stdout
        files = []
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _, raw_path = record.partition(b"\t")
            mode, kind, blob, size = meta.decode().split()
            path = raw_path.decode("utf-8", "surrogateescape")
            if self.folder and not path.startswith(f"{self.folder}/"):
                continue  # the folder itself as a file, or a sibling: never ours
            ignored = None
            if mode == SYMLINK_MODE:
                ignored = "a symbolic link: links are never followed"
            elif mode == SUBMODULE_MODE or kind != "blob":
                ignored = "a submodule: its files are not part of this repository"
            elif mode not in REGULAR_MODES:
                ignored = f"not a regular file (git mode {mode})"
            files.append(SourceFile(path, blob, int(size) if size.isdigit() else 0, ignored))
        return snapshot_of(files, self.folder)

    def read(self, blobs: Iterable[str]) -> dict[str, bytes]:
        """The bytes of each blob, from the object store (one `git cat-file --batch`)."""
        wanted = list(dict.fromkeys(blobs))
        if not wanted:
            return {}
        stdin = ("\n".join(wanted) + "\n").encode()
        out = self._git("cat-file", "--batch", input=stdin, timeout=LOCAL_TIMEOUT_SECONDS).stdout
        found: dict[str, bytes] = {}
        pos = 0
        for blob in wanted:
            end = out.index(b"\n", pos)
            header = out[pos:end].decode().split()
            if len(header) != 3:
                raise SourceError(f"{self.display}: object {blob} is missing from the fetch")
            size = int(header[2])
            found[blob] = out[end + 1 : end + 1 + size]
            pos = end + 1 + size + 1
        return found

    def _fetch(self) -> str:
        if not (self.cache / "HEAD").exists():
            self.cache.mkdir(parents=True, exist_ok=True)
            self._git("init", "--quiet", "--bare", timeout=LOCAL_TIMEOUT_SECONDS)
        refspec = f"+refs/heads/{self.branch}:{self._ref}"
        self._git(
            "fetch", "--quiet", "--depth=1", "--no-tags", "--no-recurse-submodules",
            "--", self._fetch_url, refspec, timeout=FETCH_TIMEOUT_SECONDS,
        )  # fmt: skip
        out = self._git("rev-parse", "--verify", f"{self._ref}^{{commit}}")
        return out.stdout.decode().strip()

    def _git(
        self, *args: str, input: bytes | None = None, timeout: float = LOCAL_TIMEOUT_SECONDS
    ) -> subprocess.CompletedProcess[bytes]:
        command = ["git", "--literal-pathspecs", "-C", str(self.cache), *args]
        try:
            proc = subprocess.run(
                command, input=input, capture_output=True, timeout=timeout, env=_git_env(),
                stdin=None if input is not None else subprocess.DEVNULL, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise SourceError(
                f"{self.display}: `git {args[0]}` did not finish within {timeout:g} s"
            ) from exc
        except OSError as exc:
            raise SourceError(f"cannot run git ({exc.strerror}); is git installed?") from exc
        if proc.returncode != 0:
            raise SourceError(f"{self.display}: {self._explain(args[0], proc.stderr)}")
        return proc

    def _explain(self, step: str, stderr: bytes) -> str:
        text = stderr.decode("utf-8", "replace").replace(self._fetch_url, self.display)
        text = text.replace(self.url, self.display)
        if "couldn't find remote ref" in text:
            return f"branch {self.branch!r} does not exist"
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        fatal = [line for line in lines if line.startswith(("fatal:", "error:"))] or lines
        return f"git {step} failed: {' '.join(fatal[:3]) or 'no message'}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Processes sharing a home share the cache; git's own locks would make one of two
        # concurrent fetches fail rather than wait.
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.cache}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def folder_files(root: Path, folder: str) -> tuple[Snapshot, dict[str, bytes]]:
    """The workflow files and dwf.yaml of a checkout (as `GitSource.snapshot` and `read` give
    them for a commit), for `dwf plan`: symbolic links listed as ignored and never read."""
    folder = check_folder(folder)
    top = root / folder if folder else root
    if not top.is_dir():
        raise SourceError(f"{top}: no such folder")
    files: list[SourceFile] = []
    raw: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in [
            *filenames,
            *(d for d in dirnames if os.path.islink(os.path.join(dirpath, d))),
        ]:
            full = Path(dirpath, name)
            path = full.relative_to(root).as_posix()
            if full.is_symlink():
                files.append(SourceFile(path, "", 0, "a symbolic link: links are never followed"))
                continue
            if not path.endswith(YAML_SUFFIXES):
                continue
            info = full.stat()
            if not stat.S_ISREG(info.st_mode):
                files.append(SourceFile(path, "", 0, "not a regular file"))
                continue
            if info.st_size > MAX_FILE_BYTES:  # reported `file-too-large`, never read
                files.append(SourceFile(path, "", info.st_size))
                continue
            data = full.read_bytes()
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's blob id
            files.append(SourceFile(path, blob, len(data)))
            raw[blob] = data
    return snapshot_of(files, folder), raw


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GIT_TERMINAL_PROMPT="0",  # a missing credential fails the fetch instead of waiting
        GIT_ALLOW_PROTOCOL=ALLOWED_PROTOCOLS,
        LC_ALL="C",
    )
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


def _cache_damage(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _CACHE_DAMAGE)

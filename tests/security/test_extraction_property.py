"""Whatever an archive holds, extraction never acts outside the new release.

Hypothesis generates archives from a small pool of names so that collisions happen
often: files, directories, symlinks (relative, absolute, `..`, chains through other
links), hardlinks, duplicate names, `..` member names, in any order. Each is extracted,
by calling the module's function directly, into a release directory that sits beside
outside files, directories and links to them. After every archive: nothing outside the
release changed (entries, contents, modes, owners, mtimes); a refused archive left no
release (nor its .partial directory); an accepted one has no link leaving it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from support.attack_kit import Member, extraction, link_chain, tree_state, write_tar

ARCHIVES = 3000
OUTSIDE = "@OUTSIDE@"  # replaced by the absolute path of the outside directory

# Names of the link chain's links (l1 is the releases directory, l2 the sandbox) and of
# the outside entries, so that members land below links, repeat them, and point at them.
plain = st.sampled_from(["l1", "l2", "x", "b", "outside", "dir", "keep.txt", "VERSION"])
dotted = st.sampled_from(["l1", "x", "b", "outside", "..", "."])
plain_paths = st.lists(plain, min_size=1, max_size=4).map("/".join)
relative = st.lists(dotted, min_size=1, max_size=4).map("/".join)
# A member with a '..' component refuses the whole archive before anything is written
# (what the other members would do goes untried), so such names are 1 in 8 here.
names = st.one_of(*[plain_paths] * 7, relative)
link_targets = st.one_of(plain_paths, relative, st.sampled_from(["/", "/tmp", OUTSIDE, OUTSIDE + "/dir", OUTSIDE + "/keep.txt"]))
modes = st.sampled_from([0o000, 0o600, 0o644, 0o700, 0o755, 0o777])

single_members = st.one_of(
    st.builds(Member, st.just("file"), names, data=st.sampled_from([b"1.1.0\n", b"pwned"]), mode=modes),
    st.builds(Member, st.just("dir"), names, mode=modes),
    st.builds(Member, st.just("symlink"), names, link_targets),
    st.builds(Member, st.just("hardlink"), names, link_targets),
).map(lambda member: [member])
chains = st.integers(min_value=1, max_value=3).map(link_chain)  # links that each look inside
archives = st.lists(st.one_of(single_members, chains), min_size=1, max_size=6).map(
    lambda groups: [member for group in groups for member in group])
scripts = st.sampled_from(["", "keep.txt", "x/b", "l1"])  # the migration script's path


class Sandbox:
    """releases/ beside outside/ (a file, a directory, a link inside it, and links to it
    from the releases directory, one absolute). Built once; rebuilt only after an archive
    changed something (so a failing example does not spoil the next ones)."""

    def __init__(self, root: Path) -> None:
        self.root = root / "device"
        self.outside = self.root / "outside"
        self.release = self.root / "releases" / "1.1.0"
        self.archive = root / "release.tar"
        self.build()

    def build(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        (self.outside / "dir").mkdir(parents=True, mode=0o755)
        (self.outside / "keep.txt").write_text("untouched\n")
        (self.outside / "dir" / "inner.txt").write_text("untouched\n")
        (self.outside / "link-to-dir").symlink_to("dir")
        (self.root / "releases" / "1.0.0").mkdir(parents=True)
        (self.root / "releases" / "outside").symlink_to(self.outside)
        (self.root / "releases" / "escape").symlink_to("../outside/dir")
        self.expected = self.state()

    def state(self) -> dict[str, tuple[object, ...]]:
        return tree_state(self.root, release=self.release)

    def reset(self, state: dict[str, tuple[object, ...]]) -> None:
        """Ready for the next archive: the release removed, and everything rebuilt if
        `state` says that this archive changed anything else."""
        shutil.rmtree(self.release, ignore_errors=True)
        if state != self.expected:
            self.build()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    return Sandbox(tmp_path_factory.mktemp("extract-property"))


def concrete(member: Member, outside: Path) -> Member:
    return Member(member.kind, member.name, member.target.replace(OUTSIDE, str(outside)), member.data, member.mode)


def links_leaving(release: Path) -> list[str]:
    real = release.resolve()
    links = [Path(directory, name) for directory, dirs, files in os.walk(release) for name in dirs + files]
    return [str(link) for link in links  # realpath, not resolve(): link loops are no error here
            if link.is_symlink() and not Path(os.path.realpath(link)).is_relative_to(real)]


@settings(max_examples=ARCHIVES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archive=archives, script=scripts)
def test_no_archive_acts_outside_the_release(sandbox, archive, script):
    release, expected = sandbox.release, sandbox.expected
    write_tar(sandbox.archive, [concrete(member, sandbox.outside) for member in archive])
    try:
        extraction.extract(str(sandbox.archive), str(release), "1.1.0", script)
    except extraction.ArchiveRefused:
        event("refused")
        assert not release.exists()
    else:
        event("accepted")
        assert release.is_dir() and not release.is_symlink()
        assert links_leaving(release) == []
    assert not release.with_name("1.1.0.partial").exists()
    state = sandbox.state()
    sandbox.reset(state)
    assert state == expected

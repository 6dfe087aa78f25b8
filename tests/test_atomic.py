"""`ucdir.atomic`: the one way this package writes a file so that a reader or a kill never sees it
half-written, under a name every listing skips."""

from pathlib import Path

import pytest

from ucdir.atomic import PARTIAL, atomic_path, partial_files, write_text_atomic
from ucdir.data.images import images_by_name, list_images


def test_the_temporary_file_is_hidden_and_ignored_by_every_listing(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    with atomic_path(tmp_path / "b.png") as tmp:
        tmp.write_bytes(b"half")
        assert tmp.parent == tmp_path and tmp.name.startswith(f".b.png{PARTIAL}")
        assert [p.name for p in list_images(tmp_path, "output")] == ["a.png"]
        assert list(images_by_name(tmp_path, "restored")) == ["a"]
        assert partial_files(tmp_path / "b.png") == [tmp]
    assert (tmp_path / "b.png").read_bytes() == b"half" and not partial_files(tmp_path / "b.png")


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "results.md"
    write_text_atomic(target, "old\n")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("new, half")
        raise KeyboardInterrupt
    assert target.read_text() == "old\n" and sorted(tmp_path.iterdir()) == [target]

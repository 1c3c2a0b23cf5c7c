"""Context windows cover every frame, never exceed the window, and overlap as specified (spec §5.7, §10.12)."""

from __future__ import annotations

import pytest

from mmgt.errors import MmgtError
from mmgt.pipelines.context_windows import context_windows


@pytest.mark.parametrize("closed_loop", [False, True])
@pytest.mark.parametrize("num_frames", [1, 11, 12, 13, 20, 21, 28, 100])
def test_every_frame_is_covered_and_no_window_is_too_long(num_frames, closed_loop):
    windows = context_windows(num_frames, window=12, overlap=4, closed_loop=closed_loop)
    covered = sorted({f for w in windows for f in w})
    assert covered == list(range(num_frames))
    assert all(1 <= len(w) <= 12 and len(set(w)) == len(w) for w in windows)
    if num_frames > 12:
        assert all(len(w) == 12 for w in windows)


@pytest.mark.parametrize("num_frames", [1, 11, 12])
def test_short_sequences_are_one_window(num_frames):
    for closed_loop in (False, True):
        assert context_windows(num_frames, 12, 4, closed_loop) == [list(range(num_frames))]


def test_open_windows_known_layout():
    assert context_windows(13, 12, 4) == [list(range(0, 12)), list(range(1, 13))]
    assert context_windows(20, 12, 4) == [list(range(0, 12)), list(range(8, 20))]
    assert context_windows(28, 12, 4) == [list(range(0, 12)), list(range(8, 20)), list(range(16, 28))]


@pytest.mark.parametrize("num_frames", [13, 20, 21, 28, 100])
def test_open_windows_overlap_by_the_overlap_except_the_end_aligned_last(num_frames):
    windows = context_windows(num_frames, 12, 4)
    assert all(w == list(range(w[0], w[0] + 12)) for w in windows)  # contiguous, inside the sequence
    assert windows[-1][-1] == num_frames - 1  # aligned to the end, not past it
    shared = [len(set(a) & set(b)) for a, b in zip(windows, windows[1:])]
    assert all(s == 4 for s in shared[:-1]) and shared[-1] >= 4
    assert [w[0] for w in windows[:-1]] == list(range(0, 8 * (len(windows) - 1), 8))


def test_100_frames_open():
    windows = context_windows(100, 12, 4)
    assert [w[0] for w in windows] == [0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88]
    assert len(set(windows[-2]) & set(windows[-1])) == 4


def test_closed_loop_wraps_the_last_window_to_the_start():
    assert context_windows(20, 12, 4, closed_loop=True) == [
        list(range(0, 12)),
        list(range(8, 20)),
        [16, 17, 18, 19, 0, 1, 2, 3, 4, 5, 6, 7],
    ]
    windows = context_windows(100, 12, 4, closed_loop=True)
    assert [w[0] for w in windows] == list(range(0, 100, 8))  # 0 .. 96: a start at every stride
    assert windows[-1] == [96, 97, 98, 99, 0, 1, 2, 3, 4, 5, 6, 7]
    assert all(len(set(a) & set(b)) == 4 for a, b in zip(windows, windows[1:]))


def test_overlap_zero_tiles_without_sharing():
    assert context_windows(8, 4, 0) == [[0, 1, 2, 3], [4, 5, 6, 7]]


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, 12, 4), "num_frames and window must be >= 1, got 0 and 12"),
        ((10, 0, 0), "num_frames and window must be >= 1, got 10 and 0"),
        ((10, 4, 4), r"overlap must be in \[0, window=4\), got 4"),
        ((10, 4, -1), r"overlap must be in \[0, window=4\), got -1"),
    ],
)
def test_bad_arguments_raise(args, message):
    with pytest.raises(MmgtError, match=message):
        context_windows(*args)

"""`fast_init`: the cheaper __init__ of frozen slotted dataclasses builds the same values."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field

import pytest

from lab.wire.frame import Ipv4Header, TcpFrame
from lab.wire.frozen import fast_init
from lab.wire.segment import Flags, Segment


@fast_init
@dataclass(frozen=True, slots=True)
class Point:
    x: int
    y: int = 7
    label: str = "p"


@fast_init
@dataclass(frozen=True, slots=True)
class Checked:
    value: int
    seen: list[int] = dataclasses.field(default=None, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError("negative")


def test_positional_keyword_and_default_arguments_fill_the_same_fields() -> None:
    assert Point(1) == Point(x=1, y=7, label="p")
    assert Point(1, 2, "q") == Point(label="q", y=2, x=1)
    assert (Point(3).x, Point(3).y, Point(3).label) == (3, 7, "p")


def test_the_instance_stays_frozen_hashable_and_replaceable() -> None:
    p = Point(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 5  # type: ignore[misc]
    assert hash(p) == hash(Point(1, 2))
    assert dataclasses.replace(p, y=9) == Point(1, 9)
    assert pickle.loads(pickle.dumps(p)) == p
    assert repr(p) == "Point(x=1, y=2, label='p')"


def test_missing_or_unknown_arguments_raise_as_a_dataclass_init_does() -> None:
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, z=2)  # type: ignore[call-arg]


def test_post_init_still_runs() -> None:
    with pytest.raises(ValueError, match="negative"):
        Checked(-1)
    assert Checked(1).value == 1


def test_a_field_it_cannot_build_is_refused_when_the_class_is_made() -> None:
    with pytest.raises(TypeError, match="needs the dataclass __init__"):

        @fast_init
        @dataclass(frozen=True, slots=True)
        class Listy:
            items: list[int] = field(default_factory=list)


def test_the_stack_values_use_it_and_keep_their_defaults() -> None:
    header = Ipv4Header("198.18.0.1", "198.18.0.2", 64, 9)
    assert header == Ipv4Header(src="198.18.0.1", dst="198.18.0.2", ttl=64, ident=9)
    assert (header.dont_fragment, header.protocol, header.tos) == (True, 6, 0)
    assert "_set_src" in Ipv4Header.__init__.__code__.co_names
    seg = Segment(1, 2, 3, flags=Flags.ACK)
    assert (seg.window, seg.options, seg.payload) == (0, (), b"")
    frame = TcpFrame("a", "b", header, seg)
    assert frame.segment is seg

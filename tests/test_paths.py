"""Unique names for report columns, legends and output files (written out by hand)."""

from depthsmith.paths import unique_names


def test_repeats_are_numbered_in_order():
    assert unique_names(["a", "b", "a", "a"]) == ["a", "b", "a-2", "a-3"]


def test_a_suffix_never_takes_a_name_already_in_the_list():
    # the second "a" would be "a-2", which is already the third name: it becomes "a-3"
    assert unique_names(["a", "a", "a-2"]) == ["a", "a-3", "a-2"]


def test_file_stems_use_their_own_separator():
    assert unique_names(["room_img", "room_img"], sep="_") == ["room_img", "room_img_2"]
    assert unique_names([]) == []

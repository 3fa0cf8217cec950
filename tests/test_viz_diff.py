"""View 8: word-level answer diff."""

from viz.diff import answer_diff


def test_changed_words_are_marked_on_each_side():
    left, right = answer_diff("The square is red.", "The square is blue, I think.")
    assert left == [("The square is ", None), ("red.", "removed")]
    assert right == [("The square is ", None), ("blue, I think.", "added")]


def test_equal_answers_have_no_marks_and_rejoin_exactly():
    text = "Two  shapes:\na circle"
    left, right = answer_diff(text, text)
    assert left == right == [(text, None)]


def test_insertions_only_mark_the_new_side():
    left, right = answer_diff("a red square", "a big red square")
    assert left == [("a red square", None)]
    assert right == [("a ", None), ("big ", "added"), ("red square", None)]

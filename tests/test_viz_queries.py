"""Query/head selection and grid mapping used by every view."""

import numpy as np
import pytest

from tests.synthetic_trace import synthetic_trace
from viz.queries import answer_rows, attention_map, head_maps, prompt_rows, query_label, query_rows, selected_heads


def test_answer_rows_start_at_the_last_prompt_token():
    trace = synthetic_trace()
    rows = answer_rows(trace)
    assert trace.query_positions[rows].min() == trace.n_prompt - 1
    assert [trace.tokens[p] for p in trace.query_positions[rows]] == [":", "the", "square", "is", "red"]


def test_prompt_and_answer_rows_partition_the_queries():
    trace = synthetic_trace()
    assert sorted(np.concatenate([prompt_rows(trace), answer_rows(trace)])) == list(range(len(trace.query_positions)))


def test_bad_queries_are_refused_with_the_valid_range():
    trace = synthetic_trace()
    with pytest.raises(ValueError, match="12 query rows"):
        query_rows(trace, 12)
    with pytest.raises(ValueError, match="one of"):
        query_rows(trace, "mean")
    with pytest.raises(ValueError, match="layers 0 … 3"):
        attention_map(trace, 4)


def test_planted_sink_is_the_peak_of_the_map():
    trace = synthetic_trace(grid=(3, 5), sink=(2, 1))
    values = attention_map(trace, layer=2, head=1, query="answer")
    assert np.unravel_index(values.argmax(), values.shape) == (2, 1)


def test_head_maps_and_selection_shapes():
    trace = synthetic_trace(layers=4, heads=3)
    assert head_maps(trace).shape == (4, 3, 3, 5)
    assert np.array_equal(selected_heads(trace, 0), trace.selected[:, :, 0])
    assert query_label(trace, 8) == "query 8 'the'"

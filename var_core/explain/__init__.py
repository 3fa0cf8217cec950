"""Explanation maps beside raw attention: relevancy, relative attention and the activation map (Views v2)."""

from var_core.explain.maps import (GENERIC_PROMPT, METHODS, Explanation, activation_map, explain, relative_attention,
                                   relevancy, save_explanations)

__all__ = ["GENERIC_PROMPT", "METHODS", "Explanation", "activation_map", "explain", "relative_attention",
           "relevancy", "save_explanations"]

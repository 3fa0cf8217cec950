"""ModelSlot: one model per process, loaded once, kept when switching to another model fails."""

import pytest

from var_core.models.catalog import ModelLoadError
from var_core.models.slot import ModelSlot


def fake_loader(model_id, allow_any=False):
    if model_id == "broken":
        raise ModelLoadError("cannot reach the hub")
    return f"bundle:{model_id}"


def test_same_id_is_loaded_once():
    slot = ModelSlot(loader=fake_loader)
    assert slot.get("a") == slot.get("a") == "bundle:a"
    assert slot.loads == 1 and slot.current_id == "a"


def test_failed_switch_keeps_the_previous_model():
    slot = ModelSlot(loader=fake_loader)
    slot.get("a")
    with pytest.raises(ModelLoadError, match="cannot reach"):
        slot.get("broken")
    assert slot.current == "bundle:a" and slot.current_id == "a"


def test_switching_replaces_the_model():
    slot = ModelSlot(loader=fake_loader)
    slot.get("a")
    assert slot.get("b") == "bundle:b" and slot.loads == 2


def test_loads_and_calls_run_on_one_model_thread_whoever_asks():
    import threading
    from concurrent.futures import ThreadPoolExecutor

    threads = []
    slot = ModelSlot(loader=lambda model_id, allow_any=False: threads.append(threading.get_ident()) or model_id)
    with ThreadPoolExecutor(3) as pool:  # a server's request threads
        list(pool.map(slot.get, ["a", "b", "c"]))
        threads += pool.map(lambda _: slot.call(threading.get_ident), range(3))
    assert len(set(threads)) == 1 and threads[0] != threading.get_ident()
    # work already on the model thread that calls back into the slot runs inline instead of deadlocking
    assert slot.call(lambda: slot.call(threading.get_ident)) == threads[0]
    assert slot.submit(slot.get, "c").result(timeout=5) == "c"


def test_the_paper_preset_applies_to_llava_1_5_models_only():
    from ui import settings as ui_settings
    from tests.tiny_models import tiny_qwen2_vl, tiny_vicuna_llava
    from var_core.models.common import preset_of

    bundles = {"vicuna": tiny_vicuna_llava(), "qwen": tiny_qwen2_vl()}
    slot = ModelSlot(loader=lambda model_id, allow_any=False: bundles[model_id], preset="paper")
    assert preset_of(slot.get("vicuna")) == "paper"
    assert "paper preset" in ui_settings.model_info(slot.current)
    assert preset_of(slot.get("qwen")) == "hub" and "paper" not in ui_settings.model_info(slot.current)

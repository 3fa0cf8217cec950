"""var_core.examples: the shipped example images by name, as files and as RGB images."""

import json

import pytest
from PIL import Image

from var_core import examples
from var_core.shipped import shipped

LISTING = json.loads((shipped("assets") / "examples" / "examples.json").read_text())


def test_the_names_are_the_apps_examples_in_its_order():
    assert examples.names() == [item["file"].removesuffix(".png") for item in LISTING]
    assert examples.names()[0] == "demo_three_shapes"


def test_every_name_has_its_png_in_the_shipped_assets():
    for name in examples.names():
        file = examples.path(name)
        assert file.is_file() and file.name == f"{name}.png" and file.parent == shipped("assets") / "examples"


def test_an_image_is_the_file_in_rgb():
    picture = examples.image("demo_three_shapes")
    with Image.open(examples.path("demo_three_shapes")) as stored:
        assert isinstance(picture, Image.Image) and picture.mode == "RGB" and picture.size == stored.size
        assert picture.tobytes() == stored.convert("RGB").tobytes()


@pytest.mark.parametrize("lookup", [examples.path, examples.image])
def test_an_unknown_name_is_a_value_error_that_lists_the_names(lookup):
    with pytest.raises(ValueError, match="unknown example 'demo_four_shapes'") as error:
        lookup("demo_four_shapes")
    assert all(name in str(error.value) for name in examples.names())


def test_each_example_has_the_apps_question_and_the_page_lists_them_all():
    from ui.settings import examples as page_examples

    assert examples.prompt("demo_three_shapes") == "What colour is the square?"
    assert page_examples() == [[str(examples.path(item["file"].removesuffix(".png"))), item["prompt"]]
                               for item in LISTING]
    with pytest.raises(ValueError, match="unknown example 'cat'"):
        examples.prompt("cat")

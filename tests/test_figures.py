"""Figure files: the type is checked before drawing, the file is written whole."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from flashsim.errors import InputError  # noqa: E402
from flashsim.figures import figure_format, save_figure  # noqa: E402


def test_figure_format_accepts_known_types_and_rejects_others(tmp_path):
    assert figure_format(tmp_path / "a.PNG") == "png"
    assert figure_format(tmp_path / "a") == "png"
    assert figure_format(tmp_path / "a.svg") == "svg"
    with pytest.raises(InputError, match="--plot: unsupported figure type 'jpg'"):
        figure_format(tmp_path / "a.jpg", key="--plot")


def test_save_figure_writes_the_named_type(tmp_path):
    for name, magic in (("f.png", b"\x89PNG"), ("f.pdf", b"%PDF"), ("f.svg", b"<?xml")):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        save_figure(fig, tmp_path / name)
        assert (tmp_path / name).read_bytes().startswith(magic), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pdf", "f.png", "f.svg"]

"""The main job: the compact classifier learns real handwritten digits on the numpy backend."""
from dlbatch.demo import main


def test_demo_reaches_97_percent_on_held_out_digits(capsys):
    summary = main([])
    out = capsys.readouterr().out
    assert "held-out accuracy" in out and f"epoch {summary['epochs']:2d}" in out
    assert summary["epochs"] == 8
    assert summary["accuracy"] >= 0.97
